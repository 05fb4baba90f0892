"""Tasks as plugins (core/arm_task.py): the registry and its entry points, Reach and Track on the Task
interface, a task package installed from outside that trains through its entry point, and the
arm/task identity a checkpoint records (core/identity.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mbpo_ros.core.arm_task import ArmTask, get_task_class, make_task, task_from_settings, task_names
from mbpo_ros.core.identity import check_robot, robot_differences, robot_identity, tightened_limits
from mbpo_ros.core.reach import ReachTask
from mbpo_ros.core.tasks import get_task
from mbpo_ros.core.track import TrackConfig, TrackTask

MBPO_ROS = [sys.executable, "-m", "mbpo_ros.cli"]
#: a short in-process MBPO run (only checks the pipeline end to end)
SHORT = ["--steps", "300", "--set", "mbpo.init_random_steps=100", "--set", "mbpo.epoch_length=100",
         "--set", "mbpo.model_train_freq=100", "--set", "mbpo.rollout_batch_size=500", "--set", "mbpo.utd=1",
         "--set", "ensemble.hidden_size=32", "--set", "sac.hidden_size=32", "--eval-episodes", "1",
         "--quiet", "--no-tensorboard", "--threads", "1"]


def test_registry_finds_the_builtin_tasks_through_entry_points():
    from importlib import metadata

    names = {ep.name for ep in metadata.entry_points(group="mbpo_ros.tasks")}
    assert {"reach", "track"} <= names, "setup.py declares the built-in tasks as entry points"
    assert {"reach", "track"} <= set(task_names())
    assert get_task_class("reach") is ReachTask and get_task_class("track") is TrackTask
    with pytest.raises(ValueError, match="no task named 'fly'.*reach.*track"):
        get_task_class("fly")
    with pytest.raises(ValueError, match="no settings \\['radius_m'\\]"):
        make_task("track", 6, radius_m=0.1)


@pytest.mark.parametrize("name", ["reach", "track"])
def test_task_reward_is_the_same_batched_in_torch_and_numpy(name):
    task = make_task(name, 7, home_pose=(0.0,) * 7)
    assert isinstance(task, ArmTask) and task.act_dim == 7
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, task.obs_dim)).astype(np.float32)
    nxt = rng.normal(size=(64, task.obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(64, 7)).astype(np.float32)
    spec = get_task(name, cfg=task.cfg, n_joints=7)
    r_np = spec.reward_fn(obs, act, nxt)
    r_t = spec.reward_fn(torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(nxt))
    assert isinstance(r_t, torch.Tensor) and r_t.shape == (64,)
    np.testing.assert_allclose(r_t.numpy(), r_np, rtol=1e-5, atol=1e-5)
    assert spec.identity["task"]["name"] == name and spec.identity["task"]["obs_dim"] == task.obs_dim
    rebuilt = task_from_settings(json.loads(json.dumps(task.settings())))
    assert type(rebuilt) is type(task) and rebuilt.cfg == task.cfg


def test_track_target_moves_on_its_circle_at_its_speed_inside_the_goal_box():
    task = TrackTask(TrackConfig(radius=0.05, speed=0.1))
    rng = np.random.default_rng(3)
    for _ in range(20):
        goal = task.sample_goal(rng)
        pts = np.array([task.target(goal, t) for t in np.arange(0.0, 5.0, 0.05)])
        centre = goal[:3]
        np.testing.assert_allclose(np.linalg.norm(pts[:, :3] - centre, axis=1), 0.05, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(pts[:, 3:], axis=1), 0.1, atol=1e-9)  # speed
        step = np.linalg.norm(np.diff(pts[:, :3], axis=0), axis=1)
        np.testing.assert_allclose(step, 0.1 * 0.05, rtol=0.01)  # it moves 5 mm per 50 ms step
        assert np.all(pts[:, :3] >= np.asarray(task.cfg.goal_low) - 1e-9)
        assert np.all(pts[:, :3] <= np.asarray(task.cfg.goal_high) + 1e-9)
    obs = task.observe(np.zeros(6), np.zeros(6), np.zeros(3), task.target(goal, 1.0))
    assert obs.shape == (task.obs_dim,) == (24,)
    np.testing.assert_allclose(obs[21:24], task.target(goal, 1.0)[3:], rtol=1e-6)


def test_track_env_moves_the_target_during_an_episode():
    import gymnasium as gym

    import mbpo_ros  # noqa: F401

    env = gym.make("mbpo_ros/ArmTrack-v0")
    obs, _ = env.reset(seed=1)
    task = env.unwrapped.task
    first = obs[task.goal_slice].copy()
    for _ in range(20):
        obs, _, _, _, info = env.step(np.zeros(6, dtype=np.float32))
    moved = np.linalg.norm(obs[task.goal_slice] - first)
    assert 0.5 * 20 * 0.05 * task.cfg.speed < moved <= 20 * 0.05 * task.cfg.speed + 1e-6
    np.testing.assert_allclose(info["distance"], np.linalg.norm(obs[task.delta_slice]), rtol=1e-5)
    env.close()


def _plugin(tmp_path: Path) -> Path:
    """A tiny task package installed the way pip installs one: the module and a dist-info with its
    entry point, in a directory that goes on PYTHONPATH."""
    site = tmp_path / "site"
    (site / "hover_task").mkdir(parents=True)
    (site / "hover_task" / "__init__.py").write_text(textwrap.dedent('''
        """Hover: Reach, but the reward also asks for still joints at the goal."""
        from mbpo_ros.core.reach import ReachTask


        class HoverTask(ReachTask):
            name = "hover"

            def reward_batch(self, obs, act, next_obs):
                qd = next_obs[..., self.qd_slice]
                return super().reward_batch(obs, act, next_obs) - 0.01 * (qd * qd).mean(-1)
    '''))
    dist = site / "hover_task-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hover-task\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mbpo_ros.tasks]\nhover = hover_task:HoverTask\n")
    return site


def test_an_installed_task_package_trains_and_evaluates_through_its_entry_point(tmp_path):
    site = _plugin(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    proc = subprocess.run([*MBPO_ROS, "gym", "--env", "mbpo_ros/ArmReach-v0", "--task", "hover", "--out", str(out),
                           *SHORT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())["meta"]
    assert meta["identity"]["task"]["name"] == "hover"
    assert meta["identity"]["robot"]["joint_names"][0] == "shoulder_pan"
    ev = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(out), "--episodes", "2", "--json"], env=env,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["episodes"] == 2
    # without the package the checkpoint's task cannot be rebuilt: one line naming it
    bare = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(out), "--episodes", "1"],
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode == 2 and "no task named 'hover'" in bare.stderr and "Traceback" not in bare.stderr


JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
          "wrist_3_joint"]


def _ident(names, lower=None):
    n = len(names)
    return robot_identity(names, lower or [-3.0] * n, [3.0] * n, [1.0] * n, "velocity", 20.0)


@settings(max_examples=60, deadline=None)
@given(st.permutations(JOINTS))
def test_a_reordered_arm_is_refused_naming_the_joints_that_moved(order):
    diffs = robot_differences(_ident(JOINTS), _ident(list(order)))
    if list(order) == JOINTS:
        assert diffs == []
    else:
        assert len(diffs) == 1 and "joint order differs" in diffs[0]
        moved = [j for i, j in enumerate(order) if JOINTS[i] != j]
        assert all(j in diffs[0] for j in moved)


def test_other_joints_and_limits_are_refused_naming_them():
    """Regression (issue 12): a 6-joint twin checkpoint ran on a UR-named arm without a warning."""
    twin = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3"]
    with pytest.raises(ValueError, match=r"joints \['shoulder_pan'.*not in this arm.*joints \['shoulder_pan_joint'"):
        check_robot(_ident(twin), _ident(JOINTS))
    msg = robot_differences(_ident(JOINTS), _ident(JOINTS, lower=[-3.0, -2.0, -3.0, -3.0, -3.0, -3.0]))
    assert msg == ["lower position limit differs (checkpoint -> here): shoulder_lift_joint -3 -> -2"]
    grip = robot_differences(_ident(JOINTS), _ident([*JOINTS, "gripper"]))
    assert grip == ["joints ['gripper'] of this arm are not in the checkpoint"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-0.5, 0.0, 0.5]), st.sampled_from([-0.5, 0.0, 0.5]),
                          st.sampled_from([-0.5, 0.0, 0.5])), min_size=6, max_size=6))
def test_deploy_accepts_tighter_limits_and_refuses_wider_ones_naming_them(changes):
    """The rule: with tighter_ok, an arm passes iff none of its limits is wider than the checkpoint's
    (lower below, upper or velocity above); the refusal names exactly the joints whose limits are wider,
    and tightened_limits names exactly the ones that are tighter. Without tighter_ok every change refuses."""
    rec = robot_identity(JOINTS, [-3.0] * 6, [3.0] * 6, [1.0] * 6, "velocity", 20.0)
    lower = [-3.0 + dl for dl, _, _ in changes]
    upper = [3.0 + du for _, du, _ in changes]
    vel = [1.0 + dv for _, _, dv in changes]
    here = robot_identity(JOINTS, lower, upper, vel, "velocity", 20.0)
    wider = {j for j, (dl, du, dv) in zip(JOINTS, changes) if dl < 0 or du > 0 or dv > 0}
    tighter = {j for j, (dl, du, dv) in zip(JOINTS, changes) if dl > 0 or du < 0 or dv < 0}
    diffs = robot_differences(rec, here, tighter_ok=True)
    named = {j for j in JOINTS if any(f"{j} " in d for d in diffs)}
    assert named == wider
    assert all("wider than the checkpoint's" in d for d in diffs)
    if wider:
        with pytest.raises(ValueError, match="trained for another arm"):
            check_robot(rec, here, tighter_ok=True)
    else:
        check_robot(rec, here, tighter_ok=True)
    assert {j for j in JOINTS if any(f"{j} " in t for t in tightened_limits(rec, here))} == tighter
    assert bool(robot_differences(rec, here)) == bool(wider or tighter)


def test_target_entropy_defaults_to_minus_the_number_of_joints():
    from mbpo_ros.core.config import preset
    from mbpo_ros.core.trainer import MBPO

    for n in (2, 6, 7):
        task = make_task("reach", n, home_pose=(0.0,) * n)
        cfg = preset("reach")
        cfg.device, cfg.mbpo.real_buffer_size, cfg.mbpo.rollout_batch_size = "cpu", 1000, 100
        agent = MBPO(task.obs_dim, n, cfg, get_task("reach", cfg=task.cfg, n_joints=n))
        assert agent.target_entropy == -float(n) == agent.sac.target_entropy
