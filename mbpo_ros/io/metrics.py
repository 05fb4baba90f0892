"""Training metrics: ``metrics.csv``, TensorBoard scalars, ``learning_curve.png``, a progress line.

``MetricsLogger(out_dir)`` keeps three things in ``out_dir``:

- ``metrics.csv``: one row per ``log()`` call, flushed to the OS at once so a crash of
  the process loses nothing (fsynced on ``close()``). The columns are the first row's keys; when a later row brings new
  keys, they are appended as new columns (the file is rewritten atomically with the
  wider header; earlier rows get empty cells), and keys a row lacks are written empty.
  ``resume=True`` appends to an existing file and keeps its header; ``resume=False``
  starts the file afresh.
- ``tb/``: TensorBoard event files, one scalar per numeric key at step ``row[x_key]``
  (optional: if ``torch.utils.tensorboard`` cannot be imported, a warning is issued
  and only the CSV is kept).
- ``learning_curve.png``: ``plot(y_keys, baselines=...)`` draws each y key against
  ``x_key`` from the CSV (matplotlib Agg canvas, no display needed).

``Progress(total, desc)`` renders one live line on a terminal (carriage return, rate,
ETA, extra fields) and plain periodic lines when the output is a file or a pipe.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

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
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                warnings.warn(f"TensorBoard logging disabled ({e}); metrics go to {self.csv_path} only",
                              RuntimeWarning, stacklevel=2)
            else:
                tb_dir = self.out_dir / TB_DIR
                if not resume and tb_dir.is_dir():
                    for old in tb_dir.glob("events.out.tfevents.*"):
                        old.unlink()
                purge = int(resume_at) + 1 if resume and resume_at is not None else None
                self._tb = SummaryWriter(log_dir=str(tb_dir), flush_secs=10, purge_step=purge)

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

    fig = Figure(figsize=(7.0, 2.6 * len(y_keys)), dpi=100)
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
        fig.suptitle(title)
    fig.tight_layout()

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------- progress


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_field(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """A progress report: one live line on a TTY, plain lines at most every ``interval`` s otherwise.

    total:    the count at which the job is done (e.g. env steps).
    desc:     a short label printed first.
    stream:   where to write (default sys.stdout).
    interval: seconds between plain lines when the stream is not a TTY.
    """

    def __init__(self, total: int, desc: str = "", stream: TextIO | None = None, interval: float = 5.0) -> None:
        if total < 0:
            raise ValueError(f"Progress total must be >= 0, got {total}")
        self.total = int(total)
        self.desc = desc
        self.stream = stream if stream is not None else sys.stdout
        self.interval = float(interval)
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty()) if callable(isatty) else False
        self._t0 = time.monotonic()
        self._start_done: int | None = None
        self._done = 0
        self._fields: dict[str, Any] = {}
        self._last_render = -math.inf
        self._last_printed_done: int | None = None
        self._width = 0
        self._closed = False

    def render(self) -> str:
        """The current line (without carriage return or newline)."""
        elapsed = time.monotonic() - self._t0
        start = self._start_done if self._start_done is not None else 0
        rate = (self._done - start) / elapsed if elapsed > 0 else 0.0
        remaining = max(self.total - self._done, 0)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else math.inf)
        pct = 100.0 * self._done / self.total if self.total else 100.0
        parts = [f"{self.desc}: " if self.desc else "",
                 f"{self._done}/{self.total} ({pct:5.1f}%) {rate:.1f}/s elapsed {_fmt_duration(elapsed)}"
                 f" eta {_fmt_duration(eta)}"]
        if self._fields:
            parts.append(" " + " ".join(f"{k}={_fmt_field(v)}" for k, v in self._fields.items()))
        return "".join(parts)

    def update(self, done: int, **fields: Any) -> None:
        """Report that ``done`` of ``total`` are finished; ``fields`` (e.g. eval_return=12.3) stay shown."""
        if self._start_done is None:
            self._start_done = int(done)
            self._t0 = time.monotonic()
        self._done = int(done)
        self._fields.update(fields)
        now = time.monotonic()
        if self.live:
            if now - self._last_render >= 0.1 or self._done >= self.total:
                self._write_live()
                self._last_render = now
        elif now - self._last_render >= self.interval:
            self._write_plain()
            self._last_render = now

    def _write_live(self) -> None:
        line = self.render()
        pad = max(self._width - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)
        self._last_printed_done = self._done

    def _write_plain(self) -> None:
        self.stream.write(self.render() + "\n")
        self.stream.flush()
        self._last_printed_done = self._done

    def close(self) -> None:
        """Print the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if self.live:
            self._write_live()
            self.stream.write("\n")
            self.stream.flush()
        elif self._last_printed_done != self._done or self._start_done is None:
            self._write_plain()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
