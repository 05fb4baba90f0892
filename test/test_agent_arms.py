"""agent_node and another arm: a checkpoint names the arm it was trained for, and deploy refuses an arm
with other joints or another joint order, naming them (regression, issue 12: a 6-joint twin checkpoint
deployed on an arm with UR joint names ran without a warning and drove two wrists to their limits).
Real agent_node processes; the checkpoint comes from a short in-process MBPO run on the twin."""

from __future__ import annotations

import argparse

import pytest
from test_agent_support import AgentProcess

pytestmark = pytest.mark.ros

TWIN_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3"]
UR_JOINTS = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
             "wrist_3_joint"]


@pytest.fixture(scope="module")
def twin_checkpoint(tmp_path_factory):
    from mbpo_ros import gym_train

    out = tmp_path_factory.mktemp("twin_run")
    p = argparse.ArgumentParser()
    gym_train.add_arguments(p)
    gym_train.train(p.parse_args(
        ["--env", "mbpo_ros/ArmReach-v0", "--steps", "120", "--out", str(out), "--threads", "1", "--eval-episodes",
         "1", "--no-tensorboard", "--quiet", "--set=mbpo.init_random_steps=100", "--set=mbpo.epoch_length=100",
         "--set=mbpo.real_buffer_size=1000", "--set=mbpo.rollout_batch_size=100", "--set=sac.hidden_size=16",
         "--set=ensemble.hidden_size=16"]))
    return out / "checkpoint"


def _deploy(tmp_path, checkpoint, joints) -> tuple[int, str]:
    agent = AgentProcess(tmp_path, {"mode": "deploy", "checkpoint": str(checkpoint), "joint_names": joints,
                                    "reset_service": "", "log_transitions": False, "run_dir": str(tmp_path / "run")})
    try:
        code = agent.proc.wait(timeout=120)
    finally:
        agent.stop()
    return code, agent.output()


@pytest.mark.parametrize("joints, words", [
    (UR_JOINTS, ["joints ['shoulder_pan', 'shoulder_lift'", "of the checkpoint are not in this arm",
                 "joints ['shoulder_pan_joint'"]),
    (["shoulder_lift", "shoulder_pan", *TWIN_JOINTS[2:]], ["joint order differs", "shoulder_lift (checkpoint #1, here #0)"]),
])
def test_deploy_refuses_another_arm_naming_the_joints(tmp_path, ros_domain, twin_checkpoint, joints, words):
    code, out = _deploy(tmp_path, twin_checkpoint, joints)
    assert code == 2, out[-3000:]
    assert "trained for another arm" in out
    for w in words:
        assert w in out, out[-3000:]
