"""The package builds with colcon like any ament_python package and installs the ROS layout.

colcon-core, colcon-ros and colcon-python-setup-py come from PyPI (see ENVIRONMENT.md), so
this is a real `colcon build` of the source tree into a temporary prefix, not a look at
setup.py's text.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _copy_sources(dst: Path) -> Path:
    """Copy the tracked package sources (not .venv, build output or runs) into dst/src/mbpo_ros."""
    src = dst / "src" / "mbpo_ros"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "build", "install", "log", "runs", "__pycache__", "*.egg-info", ".pytest_cache"
    )
    shutil.copytree(REPO, src, ignore=ignore)
    return src


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    colcon = shutil.which("colcon", path=str(VENV_BIN)) or shutil.which("colcon")
    if colcon is None:
        pytest.fail("colcon is not installed: `make setup` installs colcon-core, colcon-ros and colcon-python-setup-py")
    ws = tmp_path_factory.mktemp("ws")
    _copy_sources(ws)
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", str(VENV_BIN.parent))
    proc = subprocess.run(
        [colcon, "--log-base", "log", "build", "--base-paths", "src",
         "--build-base", "build", "--install-base", "install", "--event-handlers", "console_direct-"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"colcon build failed:\n{proc.stdout}\n{proc.stderr}"
    return ws / "install" / "mbpo_ros"


def test_node_executables_land_in_lib_pkg(colcon_install):
    for exe in ("agent_node", "twin_node", "mbpo-ros"):
        path = colcon_install / "lib" / "mbpo_ros" / exe
        assert path.is_file(), f"{exe} missing from lib/mbpo_ros (ros2 run would not find it)"
        assert os.access(path, os.X_OK), f"{exe} is not executable"


def test_launch_config_and_index_marker_installed(colcon_install):
    share = colcon_install / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "mbpo_ros").is_file()
    assert (share / "mbpo_ros" / "package.xml").is_file()
    for launch_file in ("train.launch.py", "deploy.launch.py"):
        assert (share / "mbpo_ros" / "launch" / launch_file).is_file(), f"launch/{launch_file} not installed"
    for cfg in ("mbpo.yaml", "twin.yaml"):
        assert (share / "mbpo_ros" / "config" / cfg).is_file(), f"config/{cfg} not installed"


def test_mjcf_asset_and_cli_work_from_install(colcon_install):
    site = next((colcon_install / "lib").glob("python3*/site-packages"))
    assert (site / "mbpo_ros" / "sim" / "assets" / "arm6.xml").is_file(), "bundled arm MJCF not installed"
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run(
        [sys.executable, str(colcon_install / "lib" / "mbpo_ros" / "mbpo-ros"), "--help"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for sub in ("train", "eval", "gym"):
        assert sub in proc.stdout


def test_package_xml_is_format3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "mbpo_ros"
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    for dep in ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs", "std_srvs",
                "diagnostic_msgs", "rosgraph_msgs", "launch", "launch_ros", "python3-numpy"):
        assert dep in exec_deps, f"package.xml lacks exec_depend {dep}"
    test_deps = {e.text for e in root.findall("test_depend")}
    assert {"launch_pytest", "python3-pytest"} <= test_deps
