"""ArmTwin and the ArmReach gym env: real MuJoCo physics, no ROS."""

from __future__ import annotations

import itertools

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import mbpo_ros.sim  # noqa: F401  (registers mbpo_ros/ArmReach-v0)
from mbpo_ros.core.reach import ReachConfig, ReachTask
from mbpo_ros.sim import ENV_ID, ArmTwin, TwinConfig

HOME = ReachConfig().home_pose


def _rollout(twin: ArmTwin, seed: int, steps: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    twin.reset(seed=seed, home=HOME, goal=[0.4, 0.0, 0.25])
    out = []
    for _ in range(steps):
        twin.apply_command(rng.uniform(-1.5, 1.5, size=twin.n_joints))
        twin.advance(0.05)
        r = twin.read()
        out.append(np.concatenate([r.position, r.velocity, r.effort, twin.ee_position()]))
    return np.array(out)


def test_physics_is_deterministic_for_a_seed():
    a = _rollout(ArmTwin(), seed=3)
    b = _rollout(ArmTwin(), seed=3)
    np.testing.assert_array_equal(a, b)
    # With every realism knob on, the same seed still gives the same episode...
    knobs = TwinConfig(
        sensor_noise_position=0.01, sensor_noise_velocity=0.05, command_latency=0.02,
        randomize_mass=0.2, randomize_damping=0.3, randomize_friction=0.3,
    )
    c = _rollout(ArmTwin(knobs), seed=5)
    d = _rollout(ArmTwin(knobs), seed=5)
    np.testing.assert_array_equal(c, d)
    # ...and another seed gives another one.
    e = _rollout(ArmTwin(knobs), seed=6)
    assert np.abs(c - e).max() > 1e-3


def test_joints_stay_within_limits_under_saturating_commands():
    twin = ArmTwin()
    twin.reset(seed=0, home=HOME)
    lo, hi = twin.joint_limits[:, 0], twin.joint_limits[:, 1]
    worst = 0.0
    for signs in np.random.default_rng(0).choice([-1.0, 1.0], size=(16, twin.n_joints)):
        twin.apply_command(signs * 100.0)  # far beyond the velocity limit: clipped
        for _ in range(30):  # 1.5 s at full speed: every joint runs into a limit
            twin.advance(0.05)
            q = twin.joint_positions()
            worst = max(worst, float(np.max(q - hi)), float(np.max(lo - q)))
    # MuJoCo limits are soft constraints; the twin's soft limits keep the overshoot far below 0.01 rad.
    assert worst < 0.01, f"a joint left its range by {worst:.4f} rad"
    np.testing.assert_array_less(np.abs(twin.command), twin.velocity_limits + 1e-9)


def test_commanded_velocity_is_realised_within_0p1_s():
    twin = ArmTwin()
    for j in range(twin.n_joints):
        twin.reset(seed=0, home=HOME)
        cmd = np.zeros(twin.n_joints)
        cmd[j] = 1.2 if j != 1 else -1.2
        twin.apply_command(cmd)
        twin.advance(0.1)
        qd = twin.joint_velocities()
        assert abs(qd[j] - cmd[j]) < 0.1 * abs(cmd[j]), f"joint {j}: {qd[j]:.3f} rad/s after 0.1 s, commanded {cmd[j]}"
        others = np.delete(qd, j)
        assert np.abs(others).max() < 0.1, f"joint {j} drags others: {others}"


def test_arm_holds_still_under_gravity_with_zero_command():
    twin = ArmTwin()
    twin.reset(seed=0, home=HOME)
    q0 = twin.joint_positions()
    twin.advance(2.0)
    np.testing.assert_allclose(twin.joint_positions(), q0, atol=1e-3)
    # Gravity is on: the shoulder and elbow drives carry the arm's weight.
    assert abs(twin.joint_efforts()[1]) > 1.0


def test_position_interface_reaches_commanded_pose():
    twin = ArmTwin(TwinConfig(command_interface="position"))
    twin.reset(seed=0, home=HOME)
    target = np.asarray(HOME) + np.array([0.3, -0.2, 0.25, -0.3, 0.5, -0.4])
    twin.apply_command(target)
    twin.advance(2.0)
    np.testing.assert_allclose(twin.joint_positions(), target, atol=0.01)


def test_bad_commands_are_rejected_and_the_last_command_held():
    twin = ArmTwin()
    twin.reset(seed=0, home=HOME)
    good = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    twin.apply_command(good)
    with pytest.raises(ValueError, match="command has 5 values, arm has 6 joints"):
        twin.apply_command(np.zeros(5))
    with pytest.raises(ValueError, match="NaN or Inf"):
        twin.apply_command([0.0, np.nan, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(twin.command, good)
    twin.advance(0.2)
    assert twin.joint_velocities()[0] == pytest.approx(0.5, abs=0.05)


def test_command_latency_delays_the_command_in_simulated_time():
    twin = ArmTwin(TwinConfig(command_latency=0.1))
    twin.reset(seed=0, home=HOME)
    twin.apply_command([1.0, 0, 0, 0, 0, 0])
    twin.advance(0.09)
    assert abs(twin.joint_velocities()[0]) < 1e-3
    twin.advance(0.1)
    assert twin.joint_velocities()[0] == pytest.approx(1.0, abs=0.1)


def test_domain_randomisation_changes_physics_per_episode_only_when_enabled():
    plain = ArmTwin()
    m0 = plain.model.body_mass.copy()
    plain.reset(seed=1)
    np.testing.assert_array_equal(plain.model.body_mass, m0)
    twin = ArmTwin(TwinConfig(randomize_mass=0.2, randomize_damping=0.3, randomize_friction=0.3))
    twin.reset(seed=1)
    m1, d1 = twin.model.body_mass.copy(), twin.model.dof_damping.copy()
    twin.reset(seed=2)
    m2, d2 = twin.model.body_mass.copy(), twin.model.dof_damping.copy()
    moving = m0 > 0
    assert not np.allclose(m1[moving], m2[moving]) and not np.allclose(d1, d2)
    assert np.all(np.abs(m1[moving] / m0[moving] - 1) <= 0.2 + 1e-9)


def test_sensor_noise_only_on_the_reading():
    twin = ArmTwin(TwinConfig(sensor_noise_position=0.01))
    twin.reset(seed=0, home=HOME)
    noisy = np.array([twin.read().position for _ in range(200)])
    true = twin.joint_positions()
    assert 0.005 < (noisy - true).std() < 0.02
    np.testing.assert_allclose(noisy.mean(0), true, atol=0.005)


def test_reset_gives_a_new_goal_inside_the_box_and_moves_the_marker():
    env = gym.make(ENV_ID)
    task = env.unwrapped.task
    lo, hi = np.array(task.cfg.goal_low), np.array(task.cfg.goal_high)
    goals = []
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        goal = obs[task.goal_slice]
        assert np.all(goal >= lo - 1e-6) and np.all(goal <= hi + 1e-6)
        twin = env.unwrapped.twin
        np.testing.assert_allclose(twin.data.mocap_pos[twin.goal_mocap], goal, atol=1e-6)
        goals.append(goal)
        np.testing.assert_allclose(obs[task.q_slice], task.home_pose, atol=task.cfg.home_noise + 1e-6)
    assert len({tuple(np.round(g, 6)) for g in goals}) == 10
    env.close()


def test_env_steps_one_control_period_and_truncates_after_the_episode():
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    twin = env.unwrapped.twin
    n = 0
    truncated = False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        n += 1
        assert not terminated and np.isfinite(reward) and reward <= 0.0
        assert info["distance"] == pytest.approx(env.unwrapped.task.distance(obs))
    assert n == 100
    assert twin.time == pytest.approx(5.0, abs=1e-9)
    env.close()


def _jacobian_controller(env, obs) -> np.ndarray:
    """A scripted expert: damped least-squares IK on the end-effector position error."""
    twin, task = env.unwrapped.twin, env.unwrapped.task
    jacp = np.zeros((3, twin.model.nv))
    mujoco.mj_jacSite(twin.model, twin.data, jacp, None, twin.site_id)
    J = jacp[:, twin.dof_adr]
    err = obs[task.delta_slice].astype(np.float64)
    dq = J.T @ np.linalg.solve(J @ J.T + 1e-4 * np.eye(3), 4.0 * err)
    return np.clip(dq / task.cfg.max_joint_velocity, -1.0, 1.0)


def test_every_corner_of_the_goal_box_is_reachable_in_an_episode():
    env = gym.make(ENV_ID)
    task: ReachTask = env.unwrapped.task
    lo, hi = np.array(task.cfg.goal_low), np.array(task.cfg.goal_high)
    for corner in itertools.product(*zip(lo, hi)):
        obs, _ = env.reset(seed=0, options={"goal": corner})
        steps_to_success = None
        for t in range(task.cfg.steps_per_episode):
            obs, _, _, _, info = env.step(_jacobian_controller(env, obs))
            if info["is_success"] and steps_to_success is None:
                steps_to_success = t + 1
        assert info["is_success"], f"goal {corner}: ended {info['distance']:.3f} m away"
        # Comfortably inside the 5 s episode at the default velocity limit.
        assert steps_to_success <= 50, f"goal {corner}: took {steps_to_success} steps"
    env.close()


def test_any_mjcf_arm_by_path(tmp_path):
    xml = """
    <mujoco>
      <compiler angle="radian"/>
      <option timestep="0.002"/>
      <worldbody>
        <body name="a" pos="0 0 0.1">
          <joint name="j1" axis="0 0 1" range="-1 1"/>
          <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.5"/>
          <body name="b" pos="0.2 0 0">
            <joint name="j2" axis="0 0 1" range="-1 1"/>
            <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.3"/>
            <site name="tip" pos="0.2 0 0"/>
          </body>
        </body>
      </worldbody>
      <actuator>
        <position name="p2" joint="j2" kp="20" kv="1"/>
        <position name="p1" joint="j1" kp="20" kv="1"/>
      </actuator>
    </mujoco>
    """
    path = tmp_path / "arm2.xml"
    path.write_text(xml)
    cfg = TwinConfig(model_path=str(path), joint_names=("j1", "j2"), actuator_names=("p1", "p2"),
                     ee_site="tip", goal_body="")
    twin = ArmTwin(cfg)
    assert twin.n_joints == 2 and twin.actuator_kinds == ("position", "position")
    twin.reset(seed=0)
    twin.apply_command([0.5, -0.5])  # velocity interface over position servos
    twin.advance(0.5)
    q = twin.joint_positions()
    assert q[0] > 0.15 and q[1] < -0.15
    with pytest.raises(ValueError, match=r"joint 'nope' is not in the model .*; its hinge and slide joints: \['j1', 'j2'\]"):
        ArmTwin(TwinConfig(model_path=str(path), joint_names=("nope",), ee_site="tip", goal_body=""))
    with pytest.raises(ValueError, match="end-effector site 'ee_site' is not in the model"):
        ArmTwin(TwinConfig(model_path=str(path)))


def test_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"twin.physics_dt = 0.5 is outside"):
        ArmTwin(TwinConfig(physics_dt=0.5))
    with pytest.raises(ValueError, match="command_interface = 'effort'"):
        ArmTwin(TwinConfig(command_interface="effort"))
