"""`mbpo-ros train --robot FILE` over ROS 2 (twin_node + agent_node, lock-step) on arms other than the bundled
one, in a short run that only checks the pipeline: the graph gets the arm's joints, limits, home pose
and goal box; the agent computes the end-effector position with the model's forward kinematics; the
checkpoint names the arm; `mbpo-ros eval` rebuilds it and refuses another arm.
The Panda (7 joints, URDF) stands for the others here (each of the five arms goes through the
in-process pipeline in test_sim_arms.py; learning on them is measured by benchmarks/arm_reach.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arm_urdf import ARMS

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
MBPO_ROS = [sys.executable, "-m", "mbpo_ros.cli"]


def _small_config(tmp_path: Path) -> Path:
    text = (REPO / "config" / "mbpo.yaml").read_text()
    for key, value in (("init_random_steps", 100), ("rollout_batch_size", 500), ("utd", 1), ("hidden_size", 32)):
        lines = [f"{line.split(':')[0]}: {value}" if line.strip().startswith(f"{key}:") else line
                 for line in text.splitlines()]
        text = "\n".join(lines) + "\n"
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("arm", ["panda"])
def test_train_on_another_arm_checkpoints_it_and_eval_rebuilds_it(arm, tmp_path):
    make, servo, ee_body, _home, n = ARMS[arm]
    model = make(tmp_path)
    robot = ["--robot", model, "--servo", servo, "--ee-body", ee_body]
    out = tmp_path / "run"
    env = {**os.environ, "AMENT_PREFIX_PATH": os.environ.get("AMENT_PREFIX_PATH", str(Path(sys.executable).parents[1]))}
    proc = subprocess.run([*MBPO_ROS, "train", *robot, "--steps", "200", "--out", str(out), "--eval-episodes", "2",
                           "--baseline-episodes", "1", "--device", "cpu", "--config", str(_small_config(tmp_path))],
                          capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 200 and summary["node_exit_codes"] == {"agent_node": 0, "twin_node": 0}
    identity = json.loads((out / "checkpoint" / "meta.json").read_text())["meta"]["identity"]
    from mbpo_ros.sim.arm_model import arm_profile

    prof = arm_profile(model, servo=servo, ee_body=ee_body)
    assert identity["robot"]["joint_names"] == list(prof.joint_names) and len(prof.joint_names) == n
    assert identity["robot"]["position_lower"] == pytest.approx(list(prof.position_lower))
    assert identity["task"]["name"] == "reach" and identity["task"]["act_dim"] == n
    assert identity["task"]["config"]["goal_low"] == pytest.approx(list(prof.goal_low))
    ev = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(out), *robot, "--episodes", "2", "--json"],
                        capture_output=True, text=True, timeout=300, env=env)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads(ev.stdout)["episodes"] == 2
    assert identity["robot"]["model"] == model  # the agent's forward kinematics ran on this model file
    rebuilt = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(out), "--episodes", "1", "--json"],
                             capture_output=True, text=True, timeout=300, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    bundled = subprocess.run([*MBPO_ROS, "eval", "--checkpoint", str(out), "--episodes", "1", "--robot",
                              str(REPO / "mbpo_ros" / "sim" / "assets" / "arm6.xml")],
                             capture_output=True, text=True, timeout=300, env=env)
    assert bundled.returncode == 2 and "trained for another arm" in bundled.stderr
    assert "panda_joint1" in bundled.stderr and "Traceback" not in bundled.stderr
