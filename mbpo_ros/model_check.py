"""`mbpo-ros check-model`: can the twin and the agent use this arm model, and if not, what is missing.

    mbpo-ros check-model my_arm.urdf --servo velocity --ee-body tool0

Loads the MJCF or URDF file exactly as twin_node would with the same options (`servo`,
`ee_body`, `ee_site`, `joint_names`), then prints the joints in command order with their limits,
the actuators, the end-effector site and the box it can reach, and every missing piece with the
option that fixes it. Exit status 0 when the arm is usable, 1 when something is missing.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="FILE", help="MJCF (.xml) or URDF (.urdf) file of the arm")
    parser.add_argument("--servo", choices=("velocity", "position"), default="",
                        help="turn torque motors (or missing actuators, as in a URDF) into servos of this kind "
                             "(twin parameter servo)")
    parser.add_argument("--ee-body", default="", metavar="BODY",
                        help="add the end-effector site at this body's origin (twin parameter ee_body)")
    parser.add_argument("--ee-site", default="ee_site", metavar="SITE",
                        help="name of the end-effector site (twin parameter ee_site, default ee_site)")
    parser.add_argument("--joints", default="", metavar="J1,J2,...",
                        help="the arm's joints in command order (default: the actuated joints in actuator order)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from mbpo_ros.sim.arm_model import check_arm

    joints = tuple(j.strip() for j in args.joints.split(",") if j.strip())
    report = check_arm(args.model, servo=args.servo, ee_body=args.ee_body, ee_site=args.ee_site, joint_names=joints)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}))
    else:
        print(report.text(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
