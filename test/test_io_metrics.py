"""MetricsLogger (CSV, TensorBoard, PNG) and Progress."""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
import torch

from mbpo_ros.io.metrics import MetricsLogger, Progress, read_metrics_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_lines(path):
    return path.read_text().splitlines()


def test_csv_columns_rows_and_new_keys(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        log.log({"env_steps": 100, "train/q_loss": 0.5, "flag": True})
        # the row is on disk before close()
        assert _read_lines(tmp_path / "metrics.csv") == ["env_steps,train/q_loss,flag", "100,0.5,1"]
        log.log({"env_steps": 200, "train/q_loss": np.float32(0.25)})  # missing key -> empty cell
        log.log({"env_steps": 300, "eval/return": torch.tensor(12.5), "train/q_loss": 1e-12})  # new key
        log.log({"train/q_loss": None, "env_steps": 400, "note": "a,b"})
    assert _read_lines(tmp_path / "metrics.csv") == [
        "env_steps,train/q_loss,flag,eval/return,note",
        "100,0.5,1,,",
        "200,0.25,,,",
        "300,1e-12,,12.5,",
        '400,,,,"a,b"',
    ]
    columns, rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert columns == ["env_steps", "train/q_loss", "flag", "eval/return", "note"]
    assert [r["eval/return"] for r in rows] == ["", "", "12.5", ""]
    assert float(rows[2]["train/q_loss"]) == 1e-12  # exact round trip
    with pytest.raises(ValueError, match="empty row"):
        MetricsLogger(tmp_path / "x", tensorboard=False).log({})


def test_resume_appends_and_fresh_run_restarts(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log({"env_steps": 1, "a": 1.0, "b": 2.0})
    log.log({"env_steps": 2, "a": 1.5, "b": 2.5})
    log.close()
    # A crash in the middle of a row (the file ends without a newline) is tolerated on resume.
    with open(tmp_path / "metrics.csv", "a") as f:
        f.write("3,1.7")
    log = MetricsLogger(tmp_path, tensorboard=False, resume=True)
    log.log({"b": 3.0, "env_steps": 4})  # other key order: the file's header order is kept
    log.close()
    assert _read_lines(tmp_path / "metrics.csv") == ["env_steps,a,b", "1,1.0,2.0", "2,1.5,2.5", "3,1.7", "4,,3.0"]
    _, rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [r["env_steps"] for r in rows] == ["1", "2", "3", "4"]

    log = MetricsLogger(tmp_path, tensorboard=False, resume=False)
    log.log({"env_steps": 10, "c": 0.0})
    log.close()
    assert _read_lines(tmp_path / "metrics.csv") == ["env_steps,c", "10,0.0"]


def test_tensorboard_scalars_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path, x_key="env_steps")
    for i in range(5):
        log.log({"env_steps": 1000 * i, "eval/success_rate": i / 10, "note": "text is csv-only"})
    log.close()
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["eval/success_rate"]
    scalars = acc.Scalars("eval/success_rate")
    assert [s.step for s in scalars] == [0, 1000, 2000, 3000, 4000]
    assert [s.value for s in scalars] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_plot_writes_valid_png(tmp_path):
    import matplotlib.image

    log = MetricsLogger(tmp_path, tensorboard=False)
    rng = np.random.default_rng(0)
    for i in range(40):
        row = {"env_steps": 250 * i, "eval/return": float(i + rng.normal())}
        if i % 5 == 0:
            row["eval/success_rate"] = i / 40
        log.log(row)
    out = log.plot(["eval/return", "eval/success_rate"], baselines={"eval/success_rate": 0.05},
                   title="Reach")
    assert out == tmp_path / "learning_curve.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    assert np.ptp(img[..., :3]) > 0.5  # something was drawn
    other = log.plot("eval/return", path=tmp_path / "sub" / "ret.png", baselines={"eval/return": (3.0, "SAC")})
    assert other.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no column 'nope'"):
        log.plot(["nope"])
    with pytest.raises(ValueError, match="not among the plotted keys"):
        log.plot(["eval/return"], baselines={"eval/success_rate": 0.1})
    log.close()


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _frames(text: str) -> list[str]:
    return [f.rstrip() for f in text.replace("\n", "\r").split("\r") if f.strip()]


def test_progress_rate_is_an_average_and_never_past_100_percent():
    """Regression: the hand-written line showed burst rates ("183971.7/s") when a whole episode of
    steps arrived at once, and "200/100 (200.0%)" when the last episode ended past --steps."""
    out = _Tty()
    p = Progress(total=100, desc="reach", stream=out, mininterval=0)
    time.sleep(0.5)
    p.advance_to(50, success="10%")  # one jump of 50 steps after 0.5 s: ~100 steps/s, not a burst rate
    time.sleep(0.5)
    p.advance_to(200, success="20%")  # the last episode ended past the total
    p.close()
    frames = _frames(out.getvalue())
    last = frames[-1]
    assert "200/200" in last and "100%" in last and "success=20%" in last, last
    rates = [float(m) for f in frames for m in re.findall(r"([0-9.]+)step/s", f)]
    assert rates and max(rates) < 1000, frames  # ~100-200 steps/s on average, never 10^5
    assert all("%" in f and int(re.search(r"(\d+)%", f).group(1)) <= 100 for f in frames)


def test_progress_of_a_resumed_run_counts_from_where_it_stopped():
    out = io.StringIO()
    p = Progress(total=1000, desc="reach", initial=600, stream=out, mininterval=0)
    time.sleep(0.3)
    p.advance_to(700)
    p.close()
    last = _frames(out.getvalue())[-1]
    assert "700/1000" in last and "70%" in last
    rate = float(re.search(r"([0-9.]+)step/s", last).group(1))
    assert rate < 1000, last  # 100 steps in ~0.3 s, not 700


def test_progress_written_to_a_file_is_throttled():
    out = io.StringIO()
    p = Progress(total=10_000, desc="gym", stream=out)
    for done in range(1, 2001):
        p.advance_to(done, loss=0.5)
    p.close()
    assert len(_frames(out.getvalue())) <= 3  # first, (none within 30 s), final: not one per update
    assert "2000/10000" in _frames(out.getvalue())[-1]
    with pytest.raises(ValueError, match=">= 0"):
        Progress(total=-1)


def test_learning_curve_title_is_not_cut_off(tmp_path):
    """Regression: the demo's two-sentence title ran off both sides of the figure."""
    from mbpo_ros.io.metrics import learning_curve_figure

    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for i in range(5):
            log.log({"env_steps": 100 * i, "success_rate": i / 5, "episode_return": -i})
    title = ("Reach on the MuJoCo twin, MBPO seed 1: training episodes (success over the last 20);\n"
             "final deterministic evaluation 100% success over 50 episodes")
    fig = learning_curve_figure(tmp_path / "metrics.csv", ["success_rate", "episode_return"], title=title)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box, page = fig._suptitle.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (box, page)
    for ax in fig.axes:  # and the title does not overlap the plots
        assert ax.get_tightbbox(renderer).y1 <= box.y0 + 1


def test_rows_survive_a_killed_process(tmp_path, kill_after_first_line):
    code = (
        "import sys, time\n"
        "from mbpo_ros.io.metrics import MetricsLogger\n"
        "log = MetricsLogger(sys.argv[1], tensorboard=False)\n"
        "for i in range(25):\n"
        "    log.log({'env_steps': i, 'loss': i / 2})\n"
        "print('logged', flush=True)\n"
        "time.sleep(60)\n"
    )
    assert kill_after_first_line(code, tmp_path) == "logged"
    _, rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [float(r["loss"]) for r in rows] == [i / 2 for i in range(25)]


def test_resume_at_checkpoint_drops_later_rows_and_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLogger(tmp_path)
    for i in range(5):
        log.log({"env_steps": 1000 * i, "ret": float(i)})
    log.close()
    # The run is resumed from its checkpoint at 2000 steps: rows 3000 and 4000 are redone.
    log = MetricsLogger(tmp_path, resume=True, resume_at=2000)
    log.log({"env_steps": 3000, "ret": 30.0})
    log.close()
    _, rows = read_metrics_csv(tmp_path / "metrics.csv")
    assert [(r["env_steps"], r["ret"]) for r in rows] == [("0", "0.0"), ("1000", "1.0"), ("2000", "2.0"),
                                                          ("3000", "30.0")]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("ret")] == [(0, 0.0), (1000, 1.0), (2000, 2.0), (3000, 30.0)]
