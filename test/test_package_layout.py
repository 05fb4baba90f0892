"""The package builds with colcon like any ament_python package and installs the ROS layout.

colcon-core, colcon-ros and colcon-python-setup-py come from PyPI (requirements.txt), so
this is a real `colcon build` of the source tree into a temporary prefix, not a look at
setup.py's text; and a real `colcon test` of one test module in that workspace, which runs
pytest only when setup.py declares pytest as a test dependency and puts the package's own
install prefix first on AMENT_PREFIX_PATH, as on a ROS machine.
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


def _colcon() -> str:
    colcon = shutil.which("colcon", path=str(VENV_BIN)) or shutil.which("colcon")
    if colcon is None:
        pytest.fail("colcon is not installed: `make setup` installs colcon-core, colcon-ros and colcon-python-setup-py")
    return colcon


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory) -> Path:
    colcon = _colcon()
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
    for exe in ("agent_node", "agent_lifecycle_node", "twin_node", "learner_node", "mbpo-ros"):
        path = colcon_install / "lib" / "mbpo_ros" / exe
        assert path.is_file(), f"{exe} missing from lib/mbpo_ros (ros2 run would not find it)"
        assert os.access(path, os.X_OK), f"{exe} is not executable"


def test_launch_config_and_index_marker_installed(colcon_install):
    share = colcon_install / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "mbpo_ros").is_file()
    assert (share / "mbpo_ros" / "package.xml").is_file()
    for launch_file in ("train.launch.py", "deploy.launch.py", "learner.launch.py", "arm.launch.py"):
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


def test_colcon_test_runs_pytest_with_the_install_prefix_first(colcon_install):
    """`colcon test` (the README's command) runs the suite with pytest, not unittest's "Ran 0 tests".

    One module is run, test_io_transition_log's exact read-back, which reads std_msgs' .msg files:
    under colcon the first AMENT_PREFIX_PATH entry is mbpo_ros's own install prefix, so it passes only
    if the test (and the product) look packages up through the ament index over every prefix.
    """
    ws = colcon_install.parents[1]
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", str(VENV_BIN.parent))
    env.pop("PYTEST_ADDOPTS", None)
    node_id = "test/test_io_transition_log.py::test_write_and_read_back_exactly"
    proc = subprocess.run(
        [_colcon(), "--log-base", "log", "test", "--base-paths", "src", "--build-base", "build",
         "--install-base", "install", "--event-handlers", "console_direct+",
         "--pytest-args", node_id, "-p", "no:cacheprovider", "-v"],
        cwd=ws, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"colcon test failed:\n{out[-4000:]}"
    assert "Ran 0 tests" not in out, "colcon ran unittest, not pytest: setup.py lacks the pytest test dependency"
    result = ws / "build" / "mbpo_ros" / "pytest.xml"
    assert result.is_file(), f"colcon's pytest step wrote no {result}:\n{out[-4000:]}"
    suite = ET.parse(result).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert (int(suite.get("tests")), int(suite.get("failures")), int(suite.get("errors"))) == (1, 0, 0), \
        ET.tostring(suite, encoding="unicode")[-4000:]
    # colcon's hook for the package prepends its own prefix: the layout the test must not assume away.
    hook = colcon_install / "share" / "mbpo_ros" / "hook" / "ament_prefix_path.dsv"
    assert hook.read_text().startswith("prepend-non-duplicate;AMENT_PREFIX_PATH;"), hook.read_text()


def test_setup_py_declares_pytest_for_colcon():
    """colcon-core's own check on setup.py: its pytest step matches the package only with the dependency."""
    from colcon_core.task.python.test import has_test_dependency
    from colcon_python_setup_py.package_identification.python_setup_py import get_setup_information

    assert has_test_dependency(get_setup_information(REPO / "setup.py"), "pytest"), \
        "setup.py must declare pytest in extras_require['test'] (and tests_require) or colcon test runs unittest"


def test_package_xml_is_format3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "mbpo_ros"
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    for dep in ("rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "trajectory_msgs", "std_srvs",
                "diagnostic_msgs", "rosgraph_msgs", "rcl_interfaces", "launch", "launch_ros", "python3-numpy",
                # rosdep keys of the non-ROS Python dependencies (rosdistro's rosdep/python.yaml)
                "python3-mujoco-pip", "python3-gymnasium-pip", "python3-tensorboard-pip", "mcap-ros2-support",
                "python3-tqdm"):
        assert dep in exec_deps, f"package.xml lacks exec_depend {dep}"
    test_deps = {e.text for e in root.findall("test_depend")}
    assert {"launch_pytest", "python3-pytest"} <= test_deps


def test_every_ros_interface_package_imported_is_declared():
    """rosdep installs what package.xml names: every `<pkg>.msg/.srv/.action` import must be an exec_depend."""
    import re

    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text for e in root.findall("exec_depend")} | {e.text for e in root.findall("depend")}
    pattern = re.compile(r"^\s*(?:from|import)\s+([a-z_][a-z0-9_]*)\.(?:msg|srv|action)\b", re.MULTILINE)
    imported = {m.group(1): path.relative_to(REPO)
                for path in [*(REPO / "mbpo_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]
                for m in pattern.finditer(path.read_text())}
    missing = {pkg: str(path) for pkg, path in imported.items() if pkg not in deps}
    assert not missing, f"imported but not declared in package.xml: {missing}"


def test_docs_cite_only_files_the_repository_has():
    """Regression: docs and docstrings cited an ENVIRONMENT.md (and a ../shared map) users do not have."""
    import re

    cited = {}
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "mbpo_ros").rglob("*.py"),
                 *(REPO / "benchmarks").glob("*.py"), *(REPO / "launch").glob("*.py")]:
        for name in re.findall(r"[A-Za-z0-9_./-]+\.md\b", path.read_text()):
            cited.setdefault(name, str(path.relative_to(REPO)))
    have = {p.name for d in ("", "docs", "mbpo_ros", "test", "benchmarks", "launch", "config")
            for p in (REPO / d).glob("*.md")}
    missing = {name: where for name, where in cited.items() if not (REPO / name).is_file() and Path(name).name not in have}
    assert not missing, f"cited but not in the repository: {missing}"
