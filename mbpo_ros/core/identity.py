"""What a checkpoint was trained for: the arm (joints, limits, command interface, rate) and the task.

A checkpoint's meta.json carries ``identity = {"task": ArmTask.settings(), "robot": robot_identity(...)}``
(written by MBPO.state from the TaskSpec). Deploy and eval rebuild the task and the arm from it, and
`check_robot` refuses an arm that differs, naming the difference: which joints are missing or extra,
which are in another order, which limits or which command interface differ. Deploy accepts limits
tighter than the recorded ones (``tighter_ok``) and logs them. Plain Python, no ROS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def robot_identity(joint_names: Sequence[str], position_lower: Sequence[float], position_upper: Sequence[float],
                   velocity_limits: Sequence[float], command_interface: str, control_rate: float,
                   model: str = "", servo: str = "", ee_body: str = "", ee_site: str = "ee_site") -> dict[str, Any]:
    """The arm as plain JSON data (what a checkpoint records and `check_robot` compares)."""
    n = len(joint_names)
    for name, values in (("position_lower", position_lower), ("position_upper", position_upper),
                         ("velocity_limits", velocity_limits)):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} values, the arm has {n} joints {list(joint_names)}")
    return {"joint_names": [str(j) for j in joint_names],
            "position_lower": [float(x) for x in position_lower],
            "position_upper": [float(x) for x in position_upper],
            "velocity_limits": [float(x) for x in velocity_limits],
            "command_interface": str(command_interface), "control_rate": float(control_rate),
            "model": str(model), "servo": str(servo), "ee_body": str(ee_body), "ee_site": str(ee_site)}


#: (identity key, what it is, +1 where a larger value is the wider limit, -1 where a smaller one is)
_LIMITS = (("position_lower", "lower position limit", -1), ("position_upper", "upper position limit", +1),
           ("velocity_limits", "velocity limit", +1))


def _limit_changes(recorded: dict[str, Any], actual: dict[str, Any], tol: float):
    """Per limit kind: (what, [(joint, checkpoint value, value here, wider?)]) for the joints that differ;
    nothing when the joints themselves differ (the values are not comparable then)."""
    joints = list(recorded.get("joint_names", []))
    if joints != list(actual.get("joint_names", [])):
        return
    for key, what, wider_sign in _LIMITS:
        r, a = recorded.get(key), actual.get(key)
        if r is None or a is None:
            continue
        changed = [(j, x, y, (y - x) * wider_sign > 0) for j, x, y in zip(joints, r, a)
                   if not math.isclose(x, y, abs_tol=tol)]
        if changed:
            yield what, changed


def robot_differences(recorded: dict[str, Any], actual: dict[str, Any], tol: float = 1e-6,
                      tighter_ok: bool = False) -> list[str]:
    """Every way `actual` differs from the `recorded` arm, one sentence each (empty = the same arm).

    tighter_ok: limits tighter than the recorded ones (a higher lower limit, a lower upper or velocity
    limit) are not differences; wider ones are (deploy: the policy never drove the arm beyond the
    limits it was trained with, and a real arm may well get stricter ones than its twin had).
    The model file is not compared (a real arm has none; the same arm may live in another path)."""
    out: list[str] = []
    rj, aj = list(recorded.get("joint_names", [])), list(actual.get("joint_names", []))
    if rj != aj:
        missing = [j for j in rj if j not in aj]
        extra = [j for j in aj if j not in rj]
        if missing:
            out.append(f"joints {missing} of the checkpoint are not in this arm's joint_names")
        if extra:
            out.append(f"joints {extra} of this arm are not in the checkpoint")
        if not missing and not extra:
            moved = [f"{j} (checkpoint #{rj.index(j)}, here #{i})" for i, j in enumerate(aj) if rj.index(j) != i]
            out.append(f"joint order differs: {', '.join(moved)}; the checkpoint's order is {rj}")
        return out  # the per-joint comparisons below need the same joints in the same order
    for what, changed in _limit_changes(recorded, actual, tol):
        diff = [f"{j} {x:g} -> {y:g}" for j, x, y, wider in changed if wider or not tighter_ok]
        if diff:
            out.append(f"{what} differs (checkpoint -> here): {', '.join(diff)}"
                       + (" (wider than the checkpoint's; tighter limits are accepted)" if tighter_ok else ""))
    for key in ("command_interface", "control_rate"):
        r, a = recorded.get(key), actual.get(key)
        if r is not None and a is not None and r != a:
            out.append(f"{key} differs: checkpoint {r}, here {a}")
    return out


def tightened_limits(recorded: dict[str, Any], actual: dict[str, Any], tol: float = 1e-6) -> list[str]:
    """The limits `actual` has tighter than the `recorded` arm, one sentence per kind (for the log)."""
    out = []
    for what, changed in _limit_changes(recorded, actual, tol):
        diff = [f"{j} {x:g} -> {y:g}" for j, x, y, wider in changed if not wider]
        if diff:
            out.append(f"{what} tighter than the checkpoint's: {', '.join(diff)}")
    return out


def check_robot(recorded: dict[str, Any] | None, actual: dict[str, Any], what: str = "checkpoint",
                tighter_ok: bool = False) -> None:
    """Raise ValueError listing every difference between the recorded arm and this one (tighter_ok: as
    :func:`robot_differences`)."""
    if not recorded:
        return
    diffs = robot_differences(recorded, actual, tighter_ok=tighter_ok)
    if diffs:
        raise ValueError(f"the {what} was trained for another arm: " + "; ".join(diffs))


def check_task(recorded: dict[str, Any] | None, name: str, obs_dim: int, act_dim: int,
               what: str = "checkpoint") -> None:
    """Raise ValueError when the task, or its observation or action size, differs from the recorded one."""
    if not recorded:
        return
    diffs = []
    if recorded.get("name") != name:
        diffs.append(f"task {recorded.get('name')!r} in the {what}, {name!r} here")
    if (recorded.get("obs_dim"), recorded.get("act_dim")) != (obs_dim, act_dim):
        diffs.append(f"observation/action sizes {recorded.get('obs_dim')}/{recorded.get('act_dim')} in the "
                     f"{what}, {obs_dim}/{act_dim} here")
    if diffs:
        raise ValueError(f"the {what} was trained for another task: " + "; ".join(diffs))
