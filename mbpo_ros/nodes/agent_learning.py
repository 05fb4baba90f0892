"""The learning side of agent_node, without ROS: learning session, transition log, episodes.csv, checkpoints.

`AgentLearning` is the controller's `Learner` (control/controller.py): `submit(transition)` logs the
transition to the rosbag2 directory `<run_dir>/transitions/` and, in train mode, hands it to the learner with its log
id (learner.LearningSession: the log is the source of truth, the supervised learner child replays
it after a crash and runs its own periodic checkpoints); `policy(env_steps)` gives the latest
snapshot (lock-step: after the trainer caught up) or the checkpoint's policy (deploy, NumPy only).
It also writes one `episodes.csv` row per finished episode and the run's metrics (io/metrics.py:
`metrics.csv`, TensorBoard scalars under `tb/` grouped `train/...` (episodes, SAC losses, UTD) and
`model/...` (model hold-out losses, buffers), `learning_curve.png` at the end; a resumed run keeps
the metrics up to its checkpoint, rows after it are redone), and turns the learner's and the log's
health into the /diagnostics status, saying through the node's logger when either changes level
(a full disk: ERROR, then WARN with the counts once the log writes again). Nothing here waits in
the control loop (except the lock-step wait, which is the point of lock-step).
"""

from __future__ import annotations

import csv
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

from mbpo_ros.control import EpisodeSummary, Transition

#: Episodes in the rolling window of train/success_rate.
SUCCESS_WINDOW = 20
#: trainer.stats() key -> TensorBoard tag (metrics.csv column) logged with every episode
TRAINER_TAGS = {
    "achieved_utd": "train/achieved_utd", "sac_updates": "train/sac_updates", "updates_per_s": "train/updates_per_s",
    "sac_critic_loss": "train/critic_loss", "sac_actor_loss": "train/actor_loss", "sac_alpha": "train/alpha",
    "sac_entropy": "train/entropy", "sac_q_mean": "train/q_mean",
    "model_holdout_loss": "model/holdout_mse", "model_holdout_nll": "model/holdout_nll",
    "truncated_fraction": "model/rollout_truncated_fraction", "model_trains": "model/trains",
    "real_buffer": "model/real_buffer", "model_buffer": "model/model_buffer",
}

EPISODE_COLUMNS = ("env_steps", "episodes", "episode_return", "success", "final_distance_m",
                   "achieved_utd", "model_loss", "wall_seconds")


class EpisodeLog:
    """Appends one row per episode to <run_dir>/episodes.csv (header once, flushed per row)."""

    def __init__(self, path: Path) -> None:
        self.episodes, self.wall_offset = 0, 0.0
        if path.exists() and path.stat().st_size > 0:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.episodes = int(float(rows[-1].get("episodes") or len(rows)))
                self.wall_offset = float(rows[-1].get("wall_seconds") or 0.0)
            self._file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", newline="")  # noqa: SIM115
            self._file.write(",".join(EPISODE_COLUMNS) + "\n")
            self._file.flush()
        self._writer, self._t0 = csv.writer(self._file), time.monotonic()

    def append(self, env_steps: int, episode_return: float, success: bool, final_distance: float,
               achieved_utd: float, model_loss: float) -> None:
        self.episodes += 1
        wall = self.wall_offset + time.monotonic() - self._t0
        self._writer.writerow([env_steps, self.episodes, f"{episode_return:.6g}", int(bool(success)),
                               f"{final_distance:.6g}", f"{achieved_utd:.4g}", f"{model_loss:.6g}", f"{wall:.3f}"])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def agent_identity(p: Any) -> dict:
    """This agent's arm as a checkpoint records it: joint names and order, limits, command interface, rate."""
    from mbpo_ros.core.identity import robot_identity

    return robot_identity(p.joint_names, p.position_lower, p.position_upper, p.velocity_limits, p.command_interface,
                          p.control_rate, model=p.robot_model, servo=p.robot_servo, ee_body=p.ee_body,
                          ee_site=p.ee_site)


def _refuse_moving_target(recorded_task: dict | None) -> None:
    """Deploy: a checkpoint of a task whose target moves (Track) is refused as that task itself would be
    (nodes/params.py check_task_goals), whatever the node's 'task' says."""
    from mbpo_ros.core.arm_task import get_task_class
    from mbpo_ros.nodes.params import check_task_goals

    try:
        cls = get_task_class(str((recorded_task or {}).get("name") or ""))
    except ValueError:  # no task recorded, or a plugin not installed here: check_task names the difference
        return
    check_task_goals(cls, "topic", "deploy")


class AgentLearning:
    """Learning session, policy and records of one agent_node run (module docstring).

    p: the node's AgentParams; settings: its AgentSettings; task: the ReachTask; log: a logger with
    info/warning/error (the node's). Raises ValueError (a ParameterError from the caller's view) when a
    deploy checkpoint does not fit the arm.
    """

    def __init__(self, p: Any, settings: Any, task: Any, run_dir: Path, log: Any, arm: str = "") -> None:
        self.p, self.log, self.run_dir = p, log, run_dir
        self.session = self.trainer = self.policy_snapshot = self.tlog = self.episode_log = self.metrics = None
        self.remote = None  # learner:=remote: learner.remote.RemoteLink
        self._successes: deque = deque(maxlen=SUCCESS_WINDOW)
        self.env_steps_at_start = 0
        self.episodes_at_start = 0  # episodes finished in this run directory before (episodes.csv)
        self.submitted = 0
        self.last_checkpoint = self.checkpoint_error = ""
        self._levels: dict[str, str] = {}  # last level logged per part ("learner", "log")
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            if p.mode == "train" and p.learner == "remote":
                from mbpo_ros.learner.remote import RemoteLink

                identity = {"task": task.settings(), "robot": agent_identity(p)}  # snapshots must match it
                self.remote = RemoteLink(arm or "agent_node", identity, task.obs_dim, task.act_dim,
                                         retain=p.fleet_retain, policy_age_warn=p.policy_age_warn,
                                         log_path=run_dir / "transitions.mcap" if p.log_transitions else None)
            elif p.mode == "train":
                from mbpo_ros.learner.session import LearningSession

                # the child builds the same task (reach.* included): its rollouts score like the log; the
                # checkpoint names the arm and the task (core/identity.py)
                self.session = LearningSession(
                    run_dir, task.obs_dim, task.act_dim, settings.cfg, p.task,
                    {"cfg": settings.reach, "n_joints": len(p.joint_names), "robot": agent_identity(p)},
                    lockstep=p.lockstep, queue_size=p.queue_size, log_transitions=p.log_transitions,
                    checkpoint_period=p.checkpoint_period)
                self.session.start()
                self.trainer, self.tlog = self.session.trainer, self.session.log
                st = self.trainer.stats()
                self.env_steps_at_start = int(st.get("env_steps", 0))
                if st.get("resumed") or st.get("replayed"):
                    log.info(f"resumed from {run_dir / 'checkpoint'} at {self.env_steps_at_start} env steps "
                             f"({st.get('replayed', 0)} transitions replayed from the log)")
            elif p.mode == "deploy":
                from mbpo_ros.core.identity import check_robot, check_task, tightened_limits
                from mbpo_ros.io.checkpoint import load_identity, load_policy

                self.policy_snapshot = load_policy(p.checkpoint)  # NumPy only: no torch, no buffers
                recorded = load_identity(p.checkpoint)  # refuse another arm or task, naming the difference
                _refuse_moving_target(recorded["task"])
                here = agent_identity(p)
                check_robot(recorded["robot"], here, what=f"checkpoint {p.checkpoint}", tighter_ok=True)
                for line in tightened_limits(recorded["robot"] or {}, here):
                    log.info(f"deploy: {line}")
                check_task(recorded["task"], task.name, task.obs_dim, task.act_dim, what=f"checkpoint {p.checkpoint}")
                if (self.policy_snapshot.obs_dim, self.policy_snapshot.act_dim) != (task.obs_dim, task.act_dim):
                    raise ValueError(
                        f"parameter 'checkpoint': its policy maps {self.policy_snapshot.obs_dim} observations to "
                        f"{self.policy_snapshot.act_dim} actions; this arm needs {task.obs_dim} -> {task.act_dim}")
            if p.log_transitions and p.mode != "deploy" and self.session is None:  # collect, or learner:=remote
                from mbpo_ros.io.transition_log import TransitionLog

                self.tlog = TransitionLog(run_dir / "transitions.mcap", obs_dim=task.obs_dim, act_dim=task.act_dim,
                                          resume=True)
            if p.mode != "deploy":
                from mbpo_ros.io.metrics import MetricsLogger

                self.episode_log = EpisodeLog(run_dir / "episodes.csv")
                self.episodes_at_start = self.episode_log.episodes
                resumed = self.env_steps_at_start > 0
                self.metrics = MetricsLogger(run_dir, x_key="env_steps", resume=resumed,
                                             resume_at=self.env_steps_at_start if resumed else None)
        except BaseException:
            if self.session is not None:
                self.session.close(checkpoint=False, timeout=10.0)
            elif self.tlog is not None:
                self.tlog.close()
            raise

    # ------------------------------------------------------------------ the controller's Learner

    def submit(self, tr: Transition) -> bool:
        """Log first (the source of truth), then the learner, with the log id. Never blocks."""
        episode = self.episode_log.episodes if self.episode_log is not None else 0
        if self.session is not None:
            accepted = self.session.record(tr.obs, tr.action, tr.reward, tr.next_obs, tr.terminated, tr.truncated,
                                           episode, tr.step, tr.stamp_ns)
            self.submitted += int(accepted)
            return accepted
        log_id = -1
        if self.tlog is not None:  # non-blocking: the log has its own bounded queue and writer thread
            log_id = self.tlog.append(tr.obs, tr.action, tr.reward, tr.next_obs, tr.terminated, tr.truncated, episode,
                                      tr.step, tr.stamp_ns)
        if self.remote is not None:  # kept for the remote learner; never waits for the network
            self.remote.submit(tr.obs, tr.action, tr.reward, tr.next_obs, tr.terminated, tr.truncated, log_id)
            self.submitted += 1
        return True

    def policy(self, env_steps: int):
        if self.remote is not None:
            return self.remote.policy()
        if self.trainer is None:
            return self.policy_snapshot
        if self.p.lockstep and not self.trainer.wait_until_trained(env_steps, self.p.lockstep_train_timeout):
            self.log.warning(f"trainer not done with step {env_steps} within {self.p.lockstep_train_timeout} s "
                             f"({self.trainer.health().message}); going on with the last policy",
                             throttle_duration_sec=10.0)
        return self.trainer.latest_snapshot()

    # ------------------------------------------------------------------ records

    def episode_done(self, e: EpisodeSummary) -> None:
        if self.episode_log is not None:
            st = self.trainer.stats() if self.trainer is not None else {}
            self.episode_log.append(e.env_steps, e.episode_return, e.success, e.final_distance,
                                    float(st.get("achieved_utd", math.nan)),
                                    float(st.get("model_holdout_loss", math.nan)))
            self._successes.append(float(e.success))
            row = {"env_steps": e.env_steps, "train/episodes": self.episode_log.episodes,
                   "train/episode_return": e.episode_return, "train/success": int(bool(e.success)),
                   "train/success_rate": sum(self._successes) / len(self._successes),
                   "train/final_distance_m": e.final_distance}
            row.update({tag: st[key] for key, tag in TRAINER_TAGS.items() if key in st})
            self.metrics.log(row)

    def start(self) -> None:
        """Nothing to start: the session's periodic checkpoints run from its start."""

    def save_checkpoint(self, timeout: float = 120.0) -> str:
        """A checkpoint of everything the log holds so far (~/save_checkpoint); returns its path."""
        if self.remote is not None:
            raise RuntimeError("learner:=remote: the learner_node writes the checkpoints (its ~/save_checkpoint)")
        if self.session is None:
            raise RuntimeError(f"mode '{self.p.mode}' has no learner to checkpoint")
        try:
            path = self.session.checkpoint(timeout=timeout)
        except (RuntimeError, TimeoutError) as exc:
            self.checkpoint_error = str(exc)
            self.log.error(f"checkpoint failed: {exc}")
            raise
        self.last_checkpoint, self.checkpoint_error = path, ""
        self.log.info(f"checkpoint written: {path} ({self.submitted} transitions this session)")
        return path

    def _say(self, part: str, level: str, message: str) -> None:
        """Log a change of `part`'s level through the node's logger (once per change)."""
        before = self._levels.get(part, "OK")
        self._levels[part] = level
        if level == before:
            return
        if level == "ERROR":
            self.log.error(f"{part}: {message}")
        elif level == "WARN":
            self.log.warning(f"{part}: {message}")
        else:
            self.log.info(f"{part}: OK again ({message})")

    def status(self, env_steps: int) -> tuple[str, str, dict[str, Any]]:
        """(level "OK" | "WARN" | "ERROR", message, values) of the learner status on /diagnostics.

        ERROR while the learner is down (restarting or dead), reports an error (a refused
        non-finite checkpoint) or the log cannot write (full disk); WARN when a checkpoint failed or
        the log lost or dropped transitions; else OK."""
        values: dict[str, Any] = {"mode": self.p.mode, "env_steps": env_steps,
                                  "episodes": self.episode_log.episodes if self.episode_log else 0}
        levels: list[tuple[str, str]] = []
        if self.tlog is not None:
            ls = self.tlog.status()
            values.update({"log_state": ls.level, "log_written": ls.written, "log_lost": ls.lost,
                           "log_dropped": ls.dropped, "log_recoveries": ls.recoveries, "log_segment": ls.segment})
            self._say("transition log", ls.level, ls.message)
            if ls.level != "OK":
                levels.append((ls.level, f"transition log: {ls.message}"))
        if self.session is not None:
            st = self.trainer.stats()
            for key in ("real_buffer", "model_buffer", "model_holdout_loss", "sac_updates", "updates_per_s",
                        "achieved_utd", "queue_dropped", "paused", "alive", "state", "restarts", "replayed",
                        "rejected_non_finite", "pid"):
                values[key] = st.get(key, "")
            values["last_checkpoint"] = self.last_checkpoint or st.get("last_checkpoint", "")
            values["checkpoint_age_s"] = f"{self.session.checkpoint_age():.1f}"
            h = self.session.health()
            values["learner_dead"] = h.dead
            self._say("learner", h.level, h.message)
            if h.level != "OK":
                levels.append((h.level, f"learner: {h.message}"))
            elif self.checkpoint_error:
                levels.append(("WARN", f"checkpoint failed: {self.checkpoint_error}"))
        if self.remote is not None:
            level, msg, more = self.remote.status(time.monotonic())
            values.update(more)
            if level != "OK":
                levels.append((level, msg))
        for want in ("ERROR", "WARN"):
            for level, msg in levels:
                if level == want:
                    return level, msg[:200], values
        return "OK", self.p.mode, values

    def abort(self) -> None:
        """Stop without a checkpoint (the node failed to start after the learner did)."""
        if self.session is not None:
            self.session.close(checkpoint=False, timeout=10.0)
        elif self.tlog is not None:
            self.tlog.close()

    def close(self) -> bool:
        """Final checkpoint (the log flushed first), close the records. Never raises.

        Returns False when training was asked for and the learner was dead at shutdown."""
        ok = True
        if self.session is not None:
            r = self.session.close(checkpoint=True, timeout=120.0)
            if r.error:
                self.log.error(f"learner: {r.error}")
            else:
                self.last_checkpoint = r.checkpoint
                self.log.info(f"final checkpoint: {r.checkpoint} ({self.trainer.stats().get('env_steps')} env steps)")
            if r.log is not None and r.log.level != "OK":
                self.log.warning(f"transition log: {r.log.message}")
            if r.learner_dead:
                self.log.error("the learner was dead at shutdown: training was asked for and did not run to the end")
                ok = False
        elif self.tlog is not None:
            self.tlog.close()
        if self.episode_log is not None:
            self.episode_log.close()
        if self.metrics is not None:
            self.metrics.close()
            if self.episode_log is not None and self.episode_log.episodes:
                try:
                    self.metrics.plot(["train/success_rate", "train/episode_return"],
                                      title=f"agent_node, {self.run_dir.name}: training episodes "
                                            f"(success over the last {SUCCESS_WINDOW})")
                except (ValueError, OSError) as exc:  # a finished run is not lost over its plot
                    self.log.warning(f"learning_curve.png not written: {exc}")
        return ok
