"""MetricsLogger (CSV, TensorBoard, PNG) and Progress."""

from __future__ import annotations

import io
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


def test_progress_on_a_tty_is_one_live_line():
    out = _Tty()
    p = Progress(total=100, desc="train", stream=out)
    for done in range(0, 101, 10):
        p.update(done, eval_return=1.23456, phase="model")
        time.sleep(0.11)  # > the 10 Hz refresh limit, so every update renders
    p.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = [f.rstrip() for f in text.rstrip("\n").split("\r") if f]
    assert len(frames) >= 11
    assert frames[-1].startswith("train: 100/100 (100.0%)")
    assert "eval_return=1.235" in frames[-1] and "phase=model" in frames[-1]
    assert "/s" in frames[1] and "eta" in frames[1]


def test_progress_without_tty_prints_periodic_lines():
    out = io.StringIO()
    p = Progress(total=1000, desc="gym", stream=out, interval=0.2)
    t_end = time.monotonic() + 1.0
    done = 0
    while time.monotonic() < t_end:
        done += 1
        p.update(done, loss=0.5)
        time.sleep(0.002)
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 8  # one line per ~0.2 s, not one per update (hundreds)
    assert done > 50
    assert lines[-1].startswith(f"gym: {done}/1000") and "loss=0.5" in lines[-1]
    with pytest.raises(ValueError, match=">= 0"):
        Progress(total=-1)


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
