"""ament_python set-up for mbpo_ros (also a plain pip-installable package)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mbpo_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    package_data={PACKAGE: ["sim/assets/*.xml", "sim/assets/*.mjcf"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    # colcon's test verb runs pytest only for a package that declares pytest as a test dependency
    # (colcon-core's PytestPythonTestingStep); without it `colcon test` falls back to unittest and
    # finds nothing.
    extras_require={"test": ["pytest", "pytest-timeout", "hypothesis"]},
    tests_require=["pytest", "pytest-timeout", "hypothesis"],
    zip_safe=False,
    maintainer="mbpo_ros maintainers",
    maintainer_email="maintainers@mbpo-ros.invalid",
    description="Model-Based Policy Optimization for robot arms on ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "agent_node = mbpo_ros.nodes.agent_node:main",
            "agent_lifecycle_node = mbpo_ros.nodes.agent_lifecycle_node:main",
            "twin_node = mbpo_ros.nodes.twin_node:main",
            "learner_node = mbpo_ros.nodes.learner_node:main",
            "mbpo-ros = mbpo_ros.cli:main",
        ],
        # Task plugins (core/arm_task.py): another package adds its own tasks to this group.
        "mbpo_ros.tasks": [
            "reach = mbpo_ros.core.reach:ReachTask",
            "track = mbpo_ros.core.track:TrackTask",
        ],
    },
)
