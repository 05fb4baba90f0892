"""Arm models: load an MJCF or URDF arm and make it drivable by the twin, through `mujoco.MjSpec`.

`build_arm_spec(path, servo=..., ee_body=...)` parses the file (MuJoCo compiles URDF itself) and,
on request, edits the parsed model with MuJoCo's model-editing API, never the file:

- ``servo="velocity"`` (or ``"position"``): every arm joint gets a velocity (position) servo. A
  torque ``motor`` becomes the servo (its torque range, times its gear, becomes the servo's force
  limit); a joint without any actuator (every URDF joint: URDF has no actuators) gets a new one
  named ``<joint>_servo``; a URDF joint's ``<limit effort>`` is its actuator force range in MuJoCo's
  import (``actuatorfrcrange``), which bounds that servo the same way. Gains are sized per joint from
  the joint-space inertia at the model's rest pose, so each servo has a time constant of
  `SERVO_TIME_CONSTANT` (velocity) or a critically damped response of that time constant (position).
  Gravity is compensated through the actuators (`gravcomp` on the arm's bodies, `actuatorgravcomp` on
  its joints), as an arm's drive does. The integrator becomes ``implicitfast``, which keeps stiff servos stable at the twin's 2 ms step.
- ``ee_body="tool0"``: adds the end-effector site (`ee_site`, default ``ee_site``) at that body's
  origin (``ee_offset`` moves it in the body's frame).

`check_arm(...)` reports what the twin and the agent will use (joints, limits, actuators, site,
reach box) and lists what is missing with the option that fixes it; `mbpo-ros check-model`
prints it. Velocity limits come from a velocity actuator's control range, or a URDF joint's
``<limit velocity=...>``, or `default_max_velocity`.
"""

from __future__ import annotations

import functools
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import mujoco
import numpy as np

SERVOS = ("", "velocity", "position")
#: Time constant [s] of a converted velocity servo (kv = inertia / SERVO_TIME_CONSTANT).
SERVO_TIME_CONSTANT = 0.02
#: The default home pose keeps each joint at least this fraction of its range (at most 2 pi) from its
#: limits. Many models rest at a range end (Gymnasium's pusher: elbow and wrist flex at 0 with ranges
#: that end at 0; the Panda's fourth joint), and an arm starting there spends its exploration against
#: a limit (issue 13: the pusher had a joint at its limit margin on 33 % of random steps at 5 %).
HOME_MARGIN = 0.25
#: Joints whose effective inertia is below this get this one when sizing gains [kg m^2].
MIN_INERTIA = 1e-4

_HINGE_SLIDE = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


class ArmModelError(ValueError):
    """The model file cannot be used as an arm; the message says which option fixes it."""


def actuator_label(model: mujoco.MjModel, a: int) -> str:
    """A useful name for actuator `a`: its name, or ``actuator #a (on joint 'j')`` when it has none."""
    name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a)
    if name:
        return repr(name)
    target = ""
    if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
        j = int(model.actuator_trnid[a, 0])
        target = f" (on joint {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)!r})"
    return f"actuator #{a}{target}"


def actuator_kind(model: mujoco.MjModel, a: int) -> str:
    """'position', 'velocity', 'intvelocity', 'motor' or 'other' (from gain, bias and dynamics types)."""
    if int(model.actuator_dyntype[a]) == int(mujoco.mjtDyn.mjDYN_INTEGRATOR):
        return "intvelocity"
    affine = int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_AFFINE)
    if affine and model.actuator_biasprm[a, 1] != 0:
        return "position"
    if affine and model.actuator_biasprm[a, 2] != 0:
        return "velocity"
    if int(model.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_NONE) and int(
            model.actuator_dyntype[a]) == int(mujoco.mjtDyn.mjDYN_NONE):
        return "motor"
    return "other"


def force_limit(model: mujoco.MjModel, a: int) -> float | None:
    """The largest force (N m on a hinge, N on a slide) actuator `a` can apply, or None where nothing bounds
    it: the tighter of its own ``forcerange`` and its joint's ``actuatorfrcrange`` (a URDF's effort limit)."""
    bounds = []
    if model.actuator_forcelimited[a]:
        bounds.append(float(np.max(np.abs(model.actuator_forcerange[a]))))
    if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
        j = int(model.actuator_trnid[a, 0])
        if model.jnt_actfrclimited[j]:
            bounds.append(float(np.max(np.abs(model.jnt_actfrcrange[j]))))
    return min(bounds) if bounds else None


def is_urdf(path: str) -> bool:
    """True when the file's root element is <robot> (URDF), false for <mujoco> (MJCF)."""
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            return elem.tag == "robot"
    except ET.ParseError as exc:
        raise ArmModelError(f"{path} is not a readable XML model file: {exc}") from exc
    return False


def urdf_velocity_limits(path: str) -> dict[str, float]:
    """joint name -> <limit velocity=...> of a URDF (MuJoCo's URDF import drops it) [rad/s or m/s]."""
    out: dict[str, float] = {}
    for joint in ET.parse(path).getroot().iter("joint"):
        limit = joint.find("limit")
        if limit is not None and limit.get("velocity") is not None:
            v = float(limit.get("velocity"))
            if v > 0 and math.isfinite(v):
                out[joint.get("name", "")] = v
    return out


def _subtree_bodies(body) -> list:
    out = [body]
    for child in body.bodies:
        out.extend(_subtree_bodies(child))
    return out


def build_arm_spec(path: str, servo: str = "", ee_body: str = "", ee_site: str = "ee_site",
                   ee_offset: tuple[float, float, float] = (0.0, 0.0, 0.0), joint_names: tuple[str, ...] = (),
                   default_max_velocity: float = 3.14) -> mujoco.MjSpec:
    """Parse an MJCF or URDF arm and apply the requested edits (see the module docstring).

    joint_names: the arm's joints when converting (empty = every hinge/slide joint that has an
    actuator, or, when none has one, every hinge/slide joint of the model).
    Raises ArmModelError naming the option that fixes the problem.
    """
    if servo not in SERVOS:
        raise ArmModelError(f"servo = {servo!r} is not one of 'velocity', 'position' or '' (keep the file's)")
    if not os.path.isfile(path):
        raise ArmModelError(f"model file {path!r} does not exist (give an MJCF .xml or a URDF .urdf file)")
    urdf = is_urdf(path)
    try:
        spec = mujoco.MjSpec.from_file(path)
    except Exception as exc:  # MuJoCo raises plain ValueError/Exception with the parser's text
        raise ArmModelError(f"MuJoCo cannot parse {path}: {exc}") from exc
    if urdf:  # keep every URDF link as a body (tool0, flange): their names are what users know
        spec.compiler.fusestatic = False
    if ee_body:
        body = spec.body(ee_body)
        if body is None:
            names = [b.name for b in spec.bodies if b.name and b.name != "world"]
            raise ArmModelError(f"ee_body {ee_body!r} is not a body of {path}; bodies: {', '.join(names)}")
        if spec.site(ee_site) is not None:
            raise ArmModelError(f"{path} already has a site {ee_site!r}: drop ee_body, or name another ee_site")
        body.add_site(name=ee_site, pos=list(map(float, ee_offset)), size=[0.01, 0.01, 0.01])
    if servo:
        _convert_to_servos(spec, path, servo, joint_names, default_max_velocity,
                           urdf_velocity_limits(path) if urdf else {})
    return spec


def _convert_to_servos(spec: mujoco.MjSpec, path: str, servo: str, joint_names: tuple[str, ...],
                       default_max_velocity: float, velocity_limits: dict[str, float]) -> None:
    model = _compile(spec, path)
    # actuators driving one joint, by joint name
    by_joint: dict[str, list] = {}
    for act in spec.actuators:
        if int(act.trntype) == int(mujoco.mjtTrn.mjTRN_JOINT):
            by_joint.setdefault(act.target, []).append(act)
    if joint_names:
        names = list(joint_names)
    else:
        hinge = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)
                 if int(model.jnt_type[j]) in _HINGE_SLIDE]
        names = [n for n in hinge if n in by_joint] or hinge
    if not names:
        raise ArmModelError(f"{path} has no hinge or slide joint to drive")
    # joint-space inertia at the rest pose sizes the gains
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    mass = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, mass)
    for name in names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ArmModelError(f"joint {name!r} is not in {path} (joint_names); {joints_listed(model)}")
        if int(model.jnt_type[jid]) not in _HINGE_SLIDE:
            raise ArmModelError(f"joint {name!r} in {path} is not a hinge or slide joint (joint_names)")
        dof = int(model.jnt_dofadr[jid])
        inertia = max(float(mass[dof, dof]), MIN_INERTIA)
        vmax = float(velocity_limits.get(name, default_max_velocity))
        acts = by_joint.get(name, [])
        if len(acts) > 1:
            raise ArmModelError(f"joint {name!r} in {path} has {len(acts)} actuators; the twin drives one per joint")
        act = acts[0] if acts else spec.add_actuator(name=f"{name}_servo", target=name,
                                                     trntype=mujoco.mjtTrn.mjTRN_JOINT)
        aid = act.id if acts else -1
        kind = actuator_kind(model, aid) if aid >= 0 else "none"
        if kind == "motor":  # the motor's torque range becomes the servo's force limit
            gear = float(act.gear[0]) or 1.0
            if act.ctrllimited != mujoco.mjtLimited.mjLIMITED_FALSE and aid >= 0 and model.actuator_ctrllimited[aid]:
                lo, hi = model.actuator_ctrlrange[aid] * gear
                act.forcerange = [min(lo, hi), max(lo, hi)]
                act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.gear = [1.0, 0, 0, 0, 0, 0]
        elif kind in ("velocity", "position", "intvelocity") and kind == servo:
            continue  # already the requested servo: keep its gains
        elif kind not in ("none", "motor", "velocity", "position", "intvelocity"):
            raise ArmModelError(f"{actuator_label(model, aid)} in {path} is a {kind} actuator the twin cannot "
                                f"convert to a {servo} servo; drive joint {name!r} with a motor or a servo")
        tau = SERVO_TIME_CONSTANT
        if servo == "velocity":
            act.set_to_velocity(kv=inertia / tau)
            act.ctrlrange = [-vmax, vmax]
        else:
            lo, hi = model.jnt_range[jid] if model.jnt_limited[jid] else (-math.pi, math.pi)
            act.set_to_position(kp=inertia / tau**2, kv=2.0 * inertia / tau)
            act.ctrlrange = [float(lo), float(hi)]
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        spec.joint(name).actgravcomp = True
    # gravity through the actuators: every body that moves with an arm joint
    for body in spec.bodies:
        if any(j.name in names for j in body.joints):
            for b in _subtree_bodies(body):
                b.gravcomp = 1.0
    spec.option.integrator = int(mujoco.mjtIntegrator.mjINT_IMPLICITFAST)


def _compile(spec: mujoco.MjSpec, path: str) -> mujoco.MjModel:
    try:
        return spec.compile()
    except Exception as exc:
        raise ArmModelError(f"MuJoCo cannot compile {path}: {exc}") from exc


def load_arm_model(path: str, servo: str = "", ee_body: str = "", ee_site: str = "ee_site",
                   ee_offset: tuple[float, float, float] = (0.0, 0.0, 0.0), joint_names: tuple[str, ...] = (),
                   default_max_velocity: float = 3.14) -> mujoco.MjModel:
    """`build_arm_spec` compiled to an MjModel."""
    spec = build_arm_spec(path, servo, ee_body, ee_site, ee_offset, joint_names, default_max_velocity)
    return _compile(spec, path)


# --------------------------------------------------------------------------- model check


@dataclass
class ArmReport:
    """What `check_arm` found. `missing` lists each problem with its fix; empty = usable."""

    path: str
    format: str
    joints: list[dict] = field(default_factory=list)
    actuators: list[dict] = field(default_factory=list)
    ee_site: str = ""
    ee_position: list[float] | None = None
    reach_low: list[float] | None = None
    reach_high: list[float] | None = None
    integrator: str = ""
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def text(self) -> str:
        lines = [f"{self.path} ({self.format})"]
        lines.append(f"  joints ({len(self.joints)}, command order):")
        for j in self.joints:
            lim = "unlimited" if j["lower"] is None else f"[{j['lower']:.4g}, {j['upper']:.4g}]"
            lines.append(f"    {j['name']:<28} {j['type']:<6} range {lim:<22} max velocity {j['max_velocity']:.4g}")
        lines.append("  actuators:")
        for a in self.actuators:
            limit = ("no force limit" if a["force_limit"] is None
                     else f"force limit {a['force_limit']:.4g} {a['force_unit']}")
            lines.append(f"    {a['label']:<28} {a['kind']:<12} on joint {a['joint']!r:<24} {limit}")
        if self.ee_position is not None:
            pos = ", ".join(f"{x:.3f}" for x in self.ee_position)
            lines.append(f"  end-effector site {self.ee_site!r} at ({pos}) m at the rest pose")
        if self.reach_low is not None:
            lo = ", ".join(f"{x:.3f}" for x in self.reach_low)
            hi = ", ".join(f"{x:.3f}" for x in self.reach_high)
            lines.append(f"  reach box (end effector over random joint positions): low ({lo}) high ({hi}) m")
        lines.append(f"  integrator: {self.integrator}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.missing:
            lines.append("MISSING:")
            lines.extend(f"  - {m}" for m in self.missing)
        else:
            lines.append("OK: the twin and the agent can use this arm")
        return "\n".join(lines)


def reach_box(model: mujoco.MjModel, joint_ids, site_id: int, samples: int = 2000, seed: int = 0,
              quantiles: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Box of end-effector positions over joint positions drawn uniformly within the limits
    ([-pi, pi] for an unlimited hinge); quantiles (0, 1) = the whole cloud. Returns (low [3], high [3])."""
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    pts = np.empty((samples, 3))
    lo = np.array([model.jnt_range[j, 0] if model.jnt_limited[j] else -math.pi for j in joint_ids])
    hi = np.array([model.jnt_range[j, 1] if model.jnt_limited[j] else math.pi for j in joint_ids])
    adr = model.jnt_qposadr[np.asarray(joint_ids, dtype=int)]
    for i in range(samples):
        data.qpos[adr] = rng.uniform(lo, hi)
        mujoco.mj_kinematics(model, data)
        pts[i] = data.site_xpos[site_id]
    return np.quantile(pts, quantiles[0], axis=0), np.quantile(pts, quantiles[1], axis=0)


#: The automatic goal box asks only for what the arm can do: at least this fraction of goals drawn from it
#: lie within REACH_TOLERANCE of an end-effector position inside the joint limits (issue 13: the pusher's
#: 10-90 % box had 7 % of its goals out of reach, the 2-joint reacher's 7 %, so 90 % success was out of reach).
GOAL_REACHABLE = 0.99
#: How close inverse kinematics must bring the end effector to a goal for it to count as reachable [m].
REACH_TOLERANCE = 0.005


def reach_error(model: mujoco.MjModel, data: mujoco.MjData, joint_ids, site_id: int, limits, goal, q0,
                iterations: int = 40) -> float:
    """Distance [m] from `goal` [3] that damped least-squares inverse kinematics from joint positions q0 [n]
    leaves the end-effector site at, the joints kept within limits (lower [n], upper [n])."""
    adr = model.jnt_qposadr[np.asarray(joint_ids, dtype=int)]
    dof = model.jnt_dofadr[np.asarray(joint_ids, dtype=int)]
    jac = np.zeros((3, model.nv))
    q = np.array(q0, dtype=np.float64)
    for _ in range(iterations + 1):
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        err = np.asarray(goal) - data.site_xpos[site_id]
        dist = float(np.linalg.norm(err))
        if dist < 0.2 * REACH_TOLERANCE:
            break
        mujoco.mj_comPos(model, data)
        mujoco.mj_jacSite(model, data, jac, None, site_id)
        j = jac[:, dof]
        q = np.clip(q + j.T @ np.linalg.solve(j @ j.T + 1e-4 * np.eye(3), err), limits[0], limits[1])
    return dist


def reachable_box(model: mujoco.MjModel, joint_ids, site_id: int, limits, qs, pts, box, rng: np.random.Generator,
                  probes: int = 200, rounds: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """`box` (low [3], high [3]) shrunk about its centre, by 10 % a round, until at least GOAL_REACHABLE of
    `probes` goals drawn from it are reachable (`reach_error` below REACH_TOLERANCE, from the two sampled
    configurations qs [m, n] whose end effectors pts [m, 3] lie nearest the goal); after `rounds` rounds the
    last box. A box the arm fills comes back unchanged (the Panda's of test/arm_urdf.py; the UR5e's loses 10 %)."""
    data = mujoco.MjData(model)
    low, high = (np.asarray(b, dtype=np.float64) for b in box)
    centre, half = (low + high) / 2, (high - low) / 2
    u = rng.uniform(-1.0, 1.0, size=(probes, 3))
    for _ in range(rounds):
        goals = centre + u * half
        reached = 0
        for g in goals:
            near = np.argsort(np.sum((pts - g) ** 2, axis=1))[:2]
            reached += min(reach_error(model, data, joint_ids, site_id, limits, g, qs[k]) for k in near) < REACH_TOLERANCE
        if reached >= GOAL_REACHABLE * probes:
            break
        half = 0.9 * half
    return centre - half, centre + half


def check_arm(path: str, servo: str = "", ee_body: str = "", ee_site: str = "ee_site",
              joint_names: tuple[str, ...] = (), default_max_velocity: float = 3.14) -> ArmReport:
    """Load the arm as the twin would and report joints, limits, actuators, site, reach box and
    what is missing (with the option that fixes each). Never raises for a model problem."""
    fmt = "?"
    try:
        fmt = "URDF" if is_urdf(path) else "MJCF"
        model = load_arm_model(path, servo, ee_body, ee_site, (0.0, 0.0, 0.0), joint_names, default_max_velocity)
    except ArmModelError as exc:
        return ArmReport(path=path, format=fmt, missing=[str(exc)])
    rep = ArmReport(path=path, format=fmt, ee_site=ee_site)
    rep.integrator = mujoco.mjtIntegrator(int(model.opt.integrator)).name.replace("mjINT_", "").lower()
    vlim = urdf_velocity_limits(path) if fmt == "URDF" else {}
    act_of: dict[int, int] = {}
    unlimited: list[str] = []
    for a in range(model.nu):
        kind = actuator_kind(model, a)
        joint, unit = "", ""
        if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT):
            j = int(model.actuator_trnid[a, 0])
            joint = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"#{j}"
            unit = "N" if int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_SLIDE) else "N m"
            act_of.setdefault(j, a)
        limit = force_limit(model, a)
        rep.actuators.append({"label": actuator_label(model, a), "kind": kind, "joint": joint,
                              "force_limit": limit, "force_unit": unit})
        if limit is None and kind in ("position", "velocity", "intvelocity"):
            unlimited.append(actuator_label(model, a))
        if kind in ("motor", "other"):
            rep.missing.append(f"{actuator_label(model, a)} is a {'torque motor' if kind == 'motor' else kind} "
                               "actuator: the twin speaks a velocity or position interface; convert it with "
                               "--servo velocity (twin parameter servo:=velocity)")
    if unlimited:
        rep.notes.append(f"no force limit on {', '.join(unlimited)}: the twin's servos apply any torque their gains "
                         "ask for, where a real drive saturates (set the actuator's forcerange, the joint's "
                         "actuatorfrcrange, or a URDF <limit effort=...>)")
    if joint_names:
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
    else:
        jids = list(act_of)
    if not jids:
        hinge = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)
                 if int(model.jnt_type[j]) in _HINGE_SLIDE]
        rep.missing.append(f"no joint has an actuator (joints: {', '.join(hinge) or 'none'}): add servos with "
                           "--servo velocity (twin parameter servo:=velocity)")
    for j in jids:
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
        a = act_of.get(j)
        vmax = vlim.get(name, default_max_velocity)
        if a is not None and actuator_kind(model, a) in ("velocity", "intvelocity") and model.actuator_ctrllimited[a]:
            vmax = float(min(abs(model.actuator_ctrlrange[a]).tolist()))
        limited = bool(model.jnt_limited[j])
        rep.joints.append({"name": name, "type": "hinge" if int(model.jnt_type[j]) == 3 else "slide",
                           "lower": float(model.jnt_range[j, 0]) if limited else None,
                           "upper": float(model.jnt_range[j, 1]) if limited else None,
                           "max_velocity": float(vmax)})
        if a is None:
            rep.missing.append(f"joint {name!r} has no actuator: add one with --servo velocity")
        if not limited:
            rep.notes.append(f"joint {name!r} has no position limits: the agent needs position_lower/position_upper "
                             "for it (the README's limits file)")
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, ee_site)
    if sid < 0:
        leaves = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(1, model.nbody)
                  if not np.any(model.body_parentid[1:] == b) and not model.body_mocapid[b] >= 0]
        rep.missing.append(f"no end-effector site {ee_site!r}: add one with --ee-body BODY (twin parameter "
                           f"ee_body:=BODY), e.g. one of the end bodies {', '.join(leaves[:6])}")
    else:
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        rep.ee_position = data.site_xpos[sid].tolist()
        if jids:
            lo, hi = reach_box(model, jids, sid)
            rep.reach_low, rep.reach_high = lo.tolist(), hi.tolist()
    if servo == "" and model.nu and int(model.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_EULER) and any(
            actuator_kind(model, a) in ("velocity", "position") for a in range(model.nu)):
        rep.notes.append("servos with the Euler integrator can be unstable; --servo velocity also sets implicitfast")
    return rep


# --------------------------------------------------------------------------- arm profile


#: Position limits given to the agent for a joint the model leaves unlimited [rad or m]: about 8 turns,
#: inside the agent's plausibility bound max_abs_position (100).
UNLIMITED = 50.0


@dataclass(frozen=True)
class ArmProfile:
    """What the agent and the Reach-like tasks need to know about an arm model (plain data).

    joint_names: command order; position_lower/upper [n] (+-UNLIMITED where the model has no
    range); velocity_limits [n]; home_pose [n]: the rest pose moved at least HOME_MARGIN of each
    joint's range away from its limits;
    goal_low/goal_high [3]: the 10-90 % box of end-effector positions within 1 rad of home, shrunk about its
    centre until the arm reaches its goals (`reachable_box`).
    """

    model_path: str
    servo: str
    ee_body: str
    ee_site: str
    joint_names: tuple[str, ...]
    position_lower: tuple[float, ...]
    position_upper: tuple[float, ...]
    velocity_limits: tuple[float, ...]
    home_pose: tuple[float, ...]
    goal_low: tuple[float, float, float]
    goal_high: tuple[float, float, float]


def joints_listed(model: mujoco.MjModel) -> str:
    """The model's hinge and slide joints, for an error that names a joint the model lacks."""
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)
             if int(model.jnt_type[j]) in _HINGE_SLIDE]
    return f"its hinge and slide joints: {names}" if names else "it has no hinge or slide joint"


def arm_joints(model: mujoco.MjModel, joint_names: tuple[str, ...] = ()) -> list[int]:
    """Joint ids in command order: `joint_names`, or the joints of the actuators in actuator order."""
    if joint_names:
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
        bad = [n for n, i in zip(joint_names, ids) if i < 0]
        if bad:
            raise ArmModelError(f"joints {bad} are not in the model (joint_names); {joints_listed(model)}")
        return ids
    return list(dict.fromkeys(int(model.actuator_trnid[a, 0]) for a in range(model.nu)
                              if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)))


def arm_profile(path: str, servo: str = "", ee_body: str = "", ee_site: str = "ee_site",
                joint_names: tuple[str, ...] = (), home_pose: tuple[float, ...] = (),
                default_max_velocity: float = 3.14, seed: int = 0) -> ArmProfile:
    """The `ArmProfile` of a model file, loaded (and converted) as the twin loads it.

    Computed once per process for the same arguments and the same version of the file (its size and
    modification time): every twin env of another arm asks for it, and the reachable goal box costs
    0.1-0.3 s of inverse kinematics (a benchmark's 50 evaluation envs asked 50 times)."""
    args = (path, servo, ee_body, ee_site, tuple(joint_names), tuple(float(x) for x in home_pose),
            float(default_max_velocity), int(seed))
    try:
        st = os.stat(path)
    except OSError:
        return _arm_profile(*args)  # load_arm_model says what is wrong with the path
    return _cached_arm_profile(st.st_size, st.st_mtime_ns, *args)


@functools.lru_cache(maxsize=32)
def _cached_arm_profile(_size: int, _mtime_ns: int, *args) -> ArmProfile:
    return _arm_profile(*args)


def _arm_profile(path: str, servo: str, ee_body: str, ee_site: str, joint_names: tuple[str, ...],
                 home_pose: tuple[float, ...], default_max_velocity: float, seed: int) -> ArmProfile:
    model = load_arm_model(path, servo, ee_body, ee_site, (0.0, 0.0, 0.0), joint_names, default_max_velocity)
    jids = arm_joints(model, joint_names)
    if not jids:
        raise ArmModelError(f"{path} has no actuated joint: add servos with servo='velocity' (--servo velocity)")
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, ee_site)
    if sid < 0:
        raise ArmModelError(f"{path} has no end-effector site {ee_site!r}: name its body with ee_body (--ee-body)")
    vlim_urdf = urdf_velocity_limits(path) if is_urdf(path) else {}
    names, lower, upper, vmax = [], [], [], []
    act_of = {int(model.actuator_trnid[a, 0]): a for a in reversed(range(model.nu))
              if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)}
    for j in jids:
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
        names.append(name)
        lo, hi = model.jnt_range[j] if model.jnt_limited[j] else (-UNLIMITED, UNLIMITED)
        lower.append(float(lo))
        upper.append(float(hi))
        v = vlim_urdf.get(name, default_max_velocity)
        a = act_of.get(j)
        if a is not None and actuator_kind(model, a) in ("velocity", "intvelocity") and model.actuator_ctrllimited[a]:
            v = float(np.min(np.abs(model.actuator_ctrlrange[a])))
        vmax.append(float(v))
    lo, hi = np.array(lower), np.array(upper)
    if home_pose:
        if len(home_pose) != len(jids):
            raise ArmModelError(f"home pose has {len(home_pose)} values, the arm has {len(jids)} joints {names}")
        home = np.asarray(home_pose, dtype=np.float64)
    else:
        span = np.minimum(hi - lo, 2 * math.pi)
        margin = HOME_MARGIN * span
        home = np.clip(model.qpos0[model.jnt_qposadr[jids]], lo + margin, hi - margin)
    rng = np.random.default_rng(seed)
    data = mujoco.MjData(model)
    adr = model.jnt_qposadr[jids]
    qs = np.clip(home + rng.uniform(-1.0, 1.0, size=(1000, len(jids))), lo, hi)
    pts = np.empty((len(qs), 3))
    for i, q in enumerate(qs):
        data.qpos[adr] = q
        mujoco.mj_kinematics(model, data)
        pts[i] = data.site_xpos[sid]
    g_lo, g_hi = np.quantile(pts, 0.1, axis=0), np.quantile(pts, 0.9, axis=0)
    g_lo, g_hi = reachable_box(model, jids, sid, (lo, hi), qs, pts, (g_lo, g_hi), rng)
    r3 = lambda v: tuple(round(float(x), 3) for x in v)  # noqa: E731
    return ArmProfile(model_path=str(path), servo=servo, ee_body=ee_body, ee_site=ee_site, joint_names=tuple(names),
                      position_lower=tuple(lower), position_upper=tuple(upper), velocity_limits=tuple(vmax),
                      home_pose=tuple(float(x) for x in home), goal_low=r3(g_lo), goal_high=r3(g_hi))
