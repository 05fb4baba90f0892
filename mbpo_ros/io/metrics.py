"""Training metrics: ``metrics.csv``, TensorBoard scalars, ``learning_curve.png``, a progress line.

``MetricsLogger(out_dir)`` keeps three things in ``out_dir``:

- ``metrics.csv``: one row per ``log()`` call, flushed to the OS at once so a crash of
  the process loses nothing (fsynced on ``close()``). The columns are the first row's keys; when a later row brings new
  keys, they are appended as new columns (the file is rewritten atomically with the
  wider header; earlier rows get empty cells), and keys a row lacks are written empty.
  ``resume=True`` appends to an existing file and keeps its header; ``resume=False``
  starts the file afresh.
- ``tb/``: TensorBoard event files, one scalar per numeric key at step ``row[x_key]``,
  written with the ``tensorboard`` package's own event writer (no torch: the agent's control
  process can log too). Keys named ``group/name`` (``train/episode_return``, ``model/holdout_loss``)
  are grouped by TensorBoard as RL users know them. Optional: without ``tensorboard`` a warning is
  issued and only the CSV is kept.
- ``learning_curve.png``: ``plot(y_keys, baselines=...)`` draws each y key against
  ``x_key`` from the CSV (matplotlib Agg canvas, no display needed).

``Progress(total, desc)`` is a tqdm bar driven by an absolute count (``advance_to``), with an
average rate and a total that a count past it raises (no burst rates, never over 100 %).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import textwrap
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["MetricsLogger", "Progress", "plot_learning_curve", "read_metrics_csv"]

CSV_NAME = "metrics.csv"
TB_DIR = "tb"
PLOT_NAME = "learning_curve.png"


def _cell(value: Any) -> str:
    """Format one value for the CSV: ints exactly, floats round-trip exactly, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    # numpy scalars, 0-d arrays / tensors
    try:
        number = value.item()
    except (AttributeError, ValueError, RuntimeError) as e:
        raise TypeError(f"metric value {value!r} ({type(value).__name__}) is not a number or string") from e
    return _cell(number)


def _as_float(value: Any) -> float | None:
    """The value as a float for TensorBoard/plots, or None when it is not numeric/empty."""
    if value is None or isinstance(value, str) and value.strip() == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_metrics_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """Read ``metrics.csv`` -> ``(columns, rows)``; cells are strings ('' where missing)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [{k: (v if v is not None else "") for k, v in row.items() if k is not None} for row in reader]
        return list(reader.fieldnames or []), rows


class _ScalarWriter:
    """TensorBoard scalars through tensorboard's EventFileWriter (what torch's SummaryWriter wraps),
    without importing torch. ``purge_step``: events from that step on, written by an earlier session,
    are hidden by TensorBoard (a SessionLog START at that step, as SummaryWriter(purge_step=) does)."""

    def __init__(self, log_dir: Path, fresh: bool, purge_step: int | None) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        if fresh and log_dir.is_dir():
            for old in log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(log_dir), max_queue_size=100, flush_secs=10)
        if purge_step is not None:
            self._writer.add_event(event_pb2.Event(
                step=int(purge_step), wall_time=time.time(),
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        value_pb = self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=int(global_step),
                                                     summary=self._summary_pb2.Summary(value=[value_pb])))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsLogger:
    """Append-only metrics log: CSV + TensorBoard + learning-curve plot.

    out_dir:     directory for metrics.csv, tb/ and learning_curve.png (created).
    x_key:       the row key used as the x axis / TensorBoard step (e.g. "env_steps").
    tensorboard: also write TensorBoard scalars (skipped with a warning if unavailable).
    resume:      append to an existing metrics.csv (keeping its header) instead of starting afresh.
    resume_at:   with resume, the x value of the checkpoint being resumed: rows logged after it
                 (x > resume_at, written before the crash/stop) are removed from the CSV and
                 TensorBoard events from step resume_at + 1 on are purged, so the curves do not
                 double back. None keeps every row.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        x_key: str = "env_steps",
        tensorboard: bool = True,
        resume: bool = False,
        resume_at: float | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.x_key = x_key
        self.csv_path = self.out_dir / CSV_NAME
        self.columns: list[str] = []
        self._rows_logged = 0
        self._warned_no_x = False
        self._file: TextIO | None = None
        if resume and self.csv_path.is_file() and self.csv_path.stat().st_size > 0:
            self.columns, rows = read_metrics_csv(self.csv_path)
            if resume_at is not None:
                kept = [r for r in rows if (_as_float(r.get(x_key)) or 0.0) <= resume_at]
                if len(kept) != len(rows):
                    self._rewrite(kept)
                rows = kept
            self._rows_logged = len(rows)
            with open(self.csv_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"  # a crash in the middle of a row: end it, keep its cells
            self._file = open(self.csv_path, "a", newline="", encoding="utf-8")
            if torn:
                self._file.write("\n")
        elif self.csv_path.exists():
            self.csv_path.unlink()  # a fresh run: the header comes from the first row
        self._tb = None
        if tensorboard:
            try:
                self._tb = _ScalarWriter(self.out_dir / TB_DIR, fresh=not resume,
                                         purge_step=int(resume_at) + 1 if resume and resume_at is not None else None)
            except ImportError as e:
                warnings.warn(f"TensorBoard logging disabled ({e}); metrics go to {self.csv_path} only",
                              RuntimeWarning, stacklevel=2)

    @property
    def tb_dir(self) -> Path:
        return self.out_dir / TB_DIR

    # ------------------------------------------------------------------ writing

    def _write_line(self, cells: list[str]) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerow(cells)
        if self._file is None:
            self._file = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._file.write(buf.getvalue())
        self._file.flush()  # in the OS's hands: a crash of this process loses nothing (fsync on close)

    def _widen(self, new_keys: list[str]) -> None:
        """Add columns: rewrite the CSV (atomically) with the wider header."""
        old_rows: list[dict[str, str]] = []
        if self.csv_path.is_file() and self.columns:
            _, old_rows = read_metrics_csv(self.csv_path)
        self.columns = self.columns + new_keys
        self._rewrite(old_rows)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        """Replace the CSV (atomically: temp file, fsync, rename) with ``self.columns`` and ``rows``."""
        if self._file is not None:
            self._file.close()
            self._file = None
        tmp = self.csv_path.with_name(f".{CSV_NAME}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for row in rows:
                writer.writerow([row.get(c, "") for c in self.columns])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.csv_path)

    def log(self, row: Mapping[str, Any]) -> None:
        """Append one row: {name: number or string}. Numbers also go to TensorBoard at step row[x_key]."""
        if not row:
            raise ValueError("MetricsLogger.log() got an empty row")
        for key in row:
            if not isinstance(key, str) or not key:
                raise ValueError(f"metric name {key!r} must be a non-empty string")
        cells = {k: _cell(v) for k, v in row.items()}
        new_keys = [k for k in row if k not in self.columns]
        if new_keys:
            self._widen(new_keys)
        self._write_line([cells.get(c, "") for c in self.columns])
        self._rows_logged += 1

        if self._tb is not None:
            step_value = _as_float(row.get(self.x_key))
            if step_value is None:
                if not self._warned_no_x:
                    warnings.warn(f"metrics row has no numeric {self.x_key!r}; TensorBoard uses the row number",
                                  RuntimeWarning, stacklevel=2)
                    self._warned_no_x = True
                step = self._rows_logged - 1
            else:
                step = int(step_value)
            for key, value in row.items():
                if key == self.x_key:
                    continue
                number = _as_float(value) if not isinstance(value, str) else None
                if number is not None:
                    self._tb.add_scalar(key, number, global_step=step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plotting

    def plot(
        self,
        y_keys: list[str] | tuple[str, ...] | str,
        path: str | os.PathLike | None = None,
        baselines: Mapping[str, float | tuple[float, str]] | None = None,
        title: str = "",
        baseline_label: str = "random policy",
    ) -> Path:
        """Draw ``y_keys`` against ``x_key`` from metrics.csv into a PNG and return its path.

        y_keys:    one subplot per key (rows where the key is empty are skipped).
        path:      output file (default out_dir/learning_curve.png).
        baselines: {y_key: value} or {y_key: (value, label)}: a dashed horizontal line,
                   labelled ``baseline_label`` unless a label is given.
        """
        return plot_learning_curve(self.csv_path, y_keys, x_key=self.x_key,
                                   path=path if path is not None else self.out_dir / PLOT_NAME,
                                   baselines=baselines, title=title, baseline_label=baseline_label)


def plot_learning_curve(
    csv_path: str | os.PathLike,
    y_keys: list[str] | tuple[str, ...] | str,
    *,
    x_key: str = "env_steps",
    path: str | os.PathLike,
    baselines: Mapping[str, float | tuple[float, str]] | None = None,
    title: str = "",
    baseline_label: str = "random policy",
) -> Path:
    """Plot columns of a metrics.csv (see ``MetricsLogger.plot``) without a logger."""
    fig = learning_curve_figure(csv_path, y_keys, x_key=x_key, baselines=baselines, title=title,
                                baseline_label=baseline_label)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out


def _wrap_title(title: str, width_in: float) -> str:
    """``title`` wrapped to the figure's width (each given line separately), so no line is cut off."""
    chars = max(int(width_in * 72 / (12 * 0.62)), 20)  # suptitle: 12 pt, ~0.62 em per character
    return "\n".join(line for part in title.split("\n") for line in (textwrap.wrap(part, chars) or [""]))


def _title_lines(title: str, width_in: float) -> int:
    return _wrap_title(title, width_in).count("\n") + 1 if title else 0


def learning_curve_figure(
    csv_path: str | os.PathLike,
    y_keys: list[str] | tuple[str, ...] | str,
    *,
    x_key: str = "env_steps",
    baselines: Mapping[str, float | tuple[float, str]] | None = None,
    title: str = "",
    baseline_label: str = "random policy",
):
    """The matplotlib Figure :func:`plot_learning_curve` saves (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(y_keys, str):
        y_keys = [y_keys]
    y_keys = list(y_keys)
    if not y_keys:
        raise ValueError("plot() needs at least one y key")
    baselines = dict(baselines or {})
    if not Path(csv_path).is_file():
        raise ValueError(f"nothing to plot: {csv_path} does not exist yet (log a row first)")
    columns, rows = read_metrics_csv(csv_path)
    for key in [x_key, *y_keys]:
        if key not in columns:
            raise ValueError(f"metrics.csv has no column {key!r}; it has {columns}")
    for key in baselines:
        if key not in y_keys:
            raise ValueError(f"baseline for {key!r}, which is not among the plotted keys {y_keys}")

    width_in = 7.0
    fig = Figure(figsize=(width_in, 2.6 * len(y_keys) + 0.25 * _title_lines(title, width_in)), dpi=100,
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(y_keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, y_keys):
        xs, ys = [], []
        for row in rows:
            x, y = _as_float(row.get(x_key)), _as_float(row.get(key))
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y):
                xs.append(x)
                ys.append(y)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, linewidth=1.5, label=key)
        if key in baselines:
            spec = baselines[key]
            value, label = spec if isinstance(spec, tuple) else (spec, baseline_label)
            ax.axhline(float(value), linestyle="--", color="grey", linewidth=1.2, label=label)
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(x_key)
    if title:
        fig.suptitle(_wrap_title(title, width_in))
    return fig



# ---------------------------------------------------------------------- progress


class Progress(tqdm):
    """A tqdm progress bar for runs whose count is read, not incremented (env steps from a log).

    ``Progress(total, desc, initial=0, unit="step", stream=None)``; ``advance_to(done, **fields)``
    moves the bar to ``done`` and shows ``fields`` (e.g. ``success="80%"``) after the rate.

    - the rate is the average since the bar started (``smoothing=0``), so a count that jumps by a
      whole episode at once does not show burst rates; a resumed run passes ``initial`` so only
      this session's steps count;
    - a count past ``total`` (the last episode ends after it) raises ``total`` to the count: the
      bar never shows more than 100 %;
    - on a terminal it redraws at most 4 times a second; written to a file or pipe, at most every 30 s.
    """

    def __init__(self, total: int, desc: str = "", initial: int = 0, unit: str = "step",
                 stream: TextIO | None = None, **kwargs: Any) -> None:
        if total < 0:
            raise ValueError(f"Progress total must be >= 0, got {total}")
        stream = stream if stream is not None else sys.stdout
        isatty = getattr(stream, "isatty", None)
        live = bool(isatty()) if callable(isatty) else False
        kwargs.setdefault("mininterval", 0.25 if live else 30.0)
        super().__init__(total=int(total), desc=desc, initial=int(initial), unit=unit, file=stream,
                         smoothing=0.0, dynamic_ncols=live, ascii=None if live else True, **kwargs)

    def advance_to(self, done: int, **fields: Any) -> None:
        """Move the bar to ``done`` (absolute count); ``fields`` are shown until replaced."""
        done = int(done)
        if self.total is not None and done > self.total:
            self.total = done
        if fields:
            self.set_postfix({k: _fmt_field(v) for k, v in fields.items()}, refresh=False)
        self.update(done - self.n)  # redraws at most every mininterval


def _fmt_field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
