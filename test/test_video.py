"""Watching the policy: the gym env's rgb_array rendering, VideoWriter (.mp4/.gif) and `mbpo-ros eval --video`.

MuJoCo renders offscreen through EGL here (Mesa's software EGL on the CI box: ~0.15 s a frame), so the
tests keep to a handful of frames.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mbpo_ros.io.video import VideoWriter

MBPO_ROS = [sys.executable, "-m", "mbpo_ros.cli"]
RENDER_ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def _render_script(code: str) -> str:
    """Run ``code`` in a child with MUJOCO_GL set before mujoco loads; returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], env=RENDER_ENV, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 and ("EGL" in proc.stderr or "OpenGL" in proc.stderr):
        pytest.skip(f"no offscreen OpenGL on this machine: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_reach_env_renders_the_arm_moving_and_writes_mp4_and_gif(tmp_path):
    out = _render_script(f"""
import gymnasium as gym, numpy as np, mbpo_ros
from mbpo_ros.io.video import VideoWriter
env = gym.make("mbpo_ros/ArmReach-v0", render_mode="rgb_array", width=160, height=120)
assert env.metadata["render_fps"] == 20.0
env.reset(seed=0)
frames = [env.render()]
for _ in range(4):
    env.step(np.ones(6, np.float32))
    frames.append(env.render())
env.close()
for suffix in ("mp4", "gif"):
    with VideoWriter(r"{tmp_path}/clip." + suffix, fps=20) as w:
        for f in frames:
            w.add(f)
np.save(r"{tmp_path}/frames.npy", np.stack(frames))
print("ok")
""")
    assert out.strip() == "ok"
    frames = np.load(tmp_path / "frames.npy")
    assert frames.shape == (5, 120, 160, 3) and frames.dtype == np.uint8
    assert frames[0].std() > 10, "a blank image, not the scene"
    moved = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(4)]
    assert min(moved) > 0.05, f"full-speed joint commands did not change the picture: {moved}"

    import imageio.v3 as iio

    mp4 = iio.imread(tmp_path / "clip.mp4", index=None)
    assert mp4.shape[0] == 5 and mp4.shape[1:3] == (120, 160)
    gif = iio.imread(tmp_path / "clip.gif", index=None)
    assert gif.shape[0] == 5


def test_video_writer_refuses_bad_paths_with_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.mp4 or \.gif"):
        VideoWriter(tmp_path / "clip.avi", fps=20)
    with pytest.raises(ValueError, match="does not exist"):
        VideoWriter(tmp_path / "nodir" / "clip.gif", fps=20)
    w = VideoWriter(tmp_path / "clip.gif", fps=20, every=3)
    calls = []
    for _ in range(7):
        w.add(lambda: calls.append(1) or np.zeros((8, 8, 3), np.uint8))
    assert len(calls) == 3 and w.frames_written == 3  # only the kept frames are rendered
    w.close()
    with pytest.raises(ValueError, match="no frame"):
        VideoWriter(tmp_path / "empty.gif", fps=20).close()


def test_eval_video_and_its_fallback_without_gl(tmp_path):
    from test_cli import _tiny_checkpoint

    _tiny_checkpoint(tmp_path / "run" / "checkpoint")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL")}
    argv = [*MBPO_ROS, "eval", "--checkpoint", str(tmp_path / "run"), "--episodes", "1", "--seed", "2"]
    # No OpenGL platform (EGL finds no vendor library): one line, then the evaluation without a video.
    proc = subprocess.run([*argv, "--video", str(tmp_path / "none.mp4")], capture_output=True, text=True,
                          timeout=300, env={**env, "__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "no video" in proc.stderr, proc.stderr
    assert "success" in proc.stdout and not (tmp_path / "none.mp4").exists()
    # Headless with EGL: the video is written (every 25th frame of one 100-step episode: 5 frames).
    proc = subprocess.run([*argv, "--video", str(tmp_path / "ep.gif"), "--video-every", "25"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    if "no video" in proc.stderr:
        pytest.skip(f"no offscreen OpenGL on this machine: {proc.stderr.strip()}")
    import imageio.v3 as iio

    assert iio.imread(tmp_path / "ep.gif", index=None).shape[0] == 5
    assert "video of 1 episode(s)" in proc.stderr


def test_import_mbpo_ros_registers_the_gym_env():
    """Regression: `import mbpo_ros` did not register mbpo_ros/ArmReach-v0 (only `import mbpo_ros.sim` did)."""
    code = ("import sys, gymnasium, mbpo_ros; assert 'mbpo_ros.sim' not in sys.modules; "
            "assert 'mujoco' not in sys.modules; env = gymnasium.make('mbpo_ros/ArmReach-v0'); "
            "print(env.reset(seed=0)[0].shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(21,)"


def test_make_bench_runs_scripts_that_exist():
    """Regression: `make bench` ran a benchmarks/run_all.py the repository does not have."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "Makefile").read_text()
    recipe = text.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    scripts = re.findall(r"benchmarks/\S+\.py", recipe)
    assert scripts, recipe
    assert all((repo / s).is_file() for s in scripts), scripts
