"""Checkpoints: round trip, atomic replacement, crash safety, refusal of pickles and corruption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from mbpo_ros.io import checkpoint as ckpt
from mbpo_ros.io.checkpoint import (
    CheckpointError,
    flatten_state_dict,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    unflatten_state_dict,
)


def _sample(step: int = 0):
    g = torch.Generator().manual_seed(step)
    base = torch.randn(4, 6, generator=g)
    tensors = {
        "ensemble/w0": torch.randn(7, 10, 200, generator=g),
        "scalar": torch.tensor(3.5 + step),
        "ints": torch.arange(5, dtype=torch.int64),
        "flags": torch.tensor([True, False]),
        "half": torch.randn(3, generator=g).to(torch.bfloat16),
        "base": base,
        "view_of_base": base[1:3],  # shares memory with "base"
        "transposed": base.t(),  # non-contiguous, shares memory
        "empty": torch.zeros(0, 3),
    }
    rng = np.random.default_rng(step)
    arrays = {
        "buffer/obs": rng.standard_normal((100, 17)).astype(np.float32),
        "buffer/done": rng.random(100) < 0.1,
        "file": np.arange(3),  # names that clash with np.savez's own arguments still work
        "allow_pickle": np.array(["a", "bc"]),
        "zero_d": np.array(7.25),
    }
    meta = {"step": step, "config": {"lr": 3e-4, "hidden": [200, 200]}, "name": "reach", "none": None}
    return tensors, arrays, meta


def _assert_same(loaded, expected):
    lt, la, lm = loaded
    et, ea, em = expected
    assert set(lt) == set(et)
    for k, t in et.items():
        assert lt[k].dtype == t.dtype, k
        assert lt[k].shape == t.shape, k
        assert torch.equal(lt[k], t.contiguous()), k
    assert set(la) == set(ea)
    for k, a in ea.items():
        assert la[k].dtype == a.dtype, k
        np.testing.assert_array_equal(la[k], a)
    assert lm == em


def test_round_trip(tmp_path):
    data = _sample(1)
    tensors, arrays, meta = data
    out = save_checkpoint(tmp_path / "ckpt", tensors=tensors, arrays=arrays, meta=meta)
    assert out == tmp_path / "ckpt"
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "meta.json", "tensors.safetensors"]
    doc = json.loads((out / "meta.json").read_text())
    assert doc["format_version"] == ckpt.FORMAT_VERSION
    assert set(doc["files"]) == {"arrays.npz", "tensors.safetensors"}
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 0 for v in doc["files"].values())
    _assert_same(load_checkpoint(out), data)
    # The NPZ is a standard one: plain numpy reads it without pickles.
    with np.load(out / "arrays.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["buffer/obs"], arrays["buffer/obs"])
    # Nothing left behind next to the checkpoint.
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_replace_and_latest(tmp_path):
    save_checkpoint(tmp_path / "a", tensors=_sample(1)[0], meta={"step": 1})
    save_checkpoint(tmp_path / "b", tensors=_sample(2)[0], meta={"step": 2})
    assert latest_checkpoint(tmp_path) == tmp_path / "b"
    time.sleep(0.01)
    data = _sample(3)
    save_checkpoint(tmp_path / "a", tensors=data[0], arrays=data[1], meta=data[2])
    _assert_same(load_checkpoint(tmp_path / "a"), data)
    assert latest_checkpoint(tmp_path) == tmp_path / "a"
    assert latest_checkpoint(tmp_path / "nothing-here") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


_FULL_DISK_WRITER = textwrap.dedent(
    """
    import resource, signal, sys, numpy as np, torch
    from mbpo_ros.io.checkpoint import save_checkpoint
    # Files may not grow past 1 MB in this process: writes beyond fail with EFBIG, like a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        save_checkpoint(sys.argv[1], tensors={"w": torch.ones(1000)},
                        arrays={"big": np.ones(1_000_000)}, meta={"step": 2})
    except OSError as e:
        print("raised", e.errno)
    else:
        print("saved")
    """
)


def test_failure_while_writing_keeps_previous(tmp_path):
    path = tmp_path / "ckpt"
    old = _sample(1)
    save_checkpoint(path, tensors=old[0], arrays=old[1], meta=old[2])
    out = subprocess.run([sys.executable, "-c", _FULL_DISK_WRITER, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "raised 27", out.stdout + out.stderr  # EFBIG, in the middle of arrays.npz
    _assert_same(load_checkpoint(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # temp dir cleaned up


def test_failure_between_renames_recovers(tmp_path, monkeypatch):
    """A failure after the old checkpoint was moved aside puts it back; so does a later load."""
    path = tmp_path / "ckpt"
    old = _sample(1)
    save_checkpoint(path, tensors=old[0], arrays=old[1], meta=old[2])
    real_rename = os.rename

    def failing_rename(src, dst):
        if str(src).startswith(str(tmp_path / ".ckpt.tmp-")):
            raise OSError(5, "Input/output error")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="Input/output"):
        save_checkpoint(path, tensors=_sample(2)[0], meta={"step": 2})
    monkeypatch.setattr(os, "rename", real_rename)
    _assert_same(load_checkpoint(path), old)

    # A process killed right after the first rename leaves only the aside copy:
    os.rename(path, tmp_path / ".ckpt.old")
    assert latest_checkpoint(tmp_path) == path  # recovered
    _assert_same(load_checkpoint(path), old)


def test_aside_copy_recovered_on_load(tmp_path):
    path = tmp_path / "ckpt"
    old = _sample(4)
    save_checkpoint(path, tensors=old[0], arrays=old[1], meta=old[2])
    os.rename(path, tmp_path / ".ckpt.old")
    _assert_same(load_checkpoint(path), old)
    assert path.is_dir() and not (tmp_path / ".ckpt.old").exists()


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, numpy as np, torch
    from mbpo_ros.io.checkpoint import save_checkpoint
    path = sys.argv[1]
    step = int(sys.argv[2])
    while True:
        step += 1
        save_checkpoint(path, tensors={"w": torch.full((256, 1024), float(step))},
                        arrays={"buf": np.full((300_000,), step, dtype=np.int64)}, meta={"step": step})
        print(step, flush=True)
    """
)


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path, kill_after_first_line):
    path = tmp_path / "ckpt"
    save_checkpoint(path, tensors={"w": torch.zeros(256, 1024)},
                    arrays={"buf": np.zeros(300_000, dtype=np.int64)}, meta={"step": 0})
    last = 0
    rng = np.random.default_rng(0)
    for _ in range(3):
        # first line: at least one save finished, the writer is in its loop
        first = kill_after_first_line(_KILLED_WRITER, path, last, delay=float(rng.uniform(0.0, 0.3)))
        tensors, arrays, meta = load_checkpoint(path)
        step = meta["step"]
        assert step >= int(first)
        assert torch.equal(tensors["w"], torch.full((256, 1024), float(step)))
        assert np.all(arrays["buf"] == step)
        last = step
    # A later save cleans up whatever the killed writers left behind.
    save_checkpoint(path, meta={"step": -1})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_object_arrays_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match="pickling"):
        save_checkpoint(tmp_path / "c", arrays={"objs": np.array([{"a": 1}, None], dtype=object)})
    assert not (tmp_path / "c").exists()
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "c", meta={"bad": object()})
    with pytest.raises(TypeError, match="torch.Tensor"):
        save_checkpoint(tmp_path / "c", tensors={"x": np.zeros(3)})


def _rewrite_manifest(path):
    doc = json.loads((path / "meta.json").read_text())
    for name in doc["files"]:
        doc["files"][name] = ckpt._file_digest(path / name)
    (path / "meta.json").write_text(json.dumps(doc))


def test_pickle_payload_refused_on_load(tmp_path):
    """Even with a matching manifest, an object array (a pickle) inside arrays.npz is not unpickled."""
    path = save_checkpoint(tmp_path / "c", arrays={"ok": np.arange(3)})
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(path / "arrays.npz", "wb") as f:
        np.savez(f, ok=np.arange(3), evil=np.array([Evil()], dtype=object))
    _rewrite_manifest(path)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("target", ["tensors.safetensors", "arrays.npz"])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corruption_detected(tmp_path, target, damage):
    tensors, arrays, meta = _sample(5)
    path = save_checkpoint(tmp_path / "c", tensors=tensors, arrays=arrays, meta=meta)
    f = path / target
    raw = bytearray(f.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) - 100]
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=target):
        load_checkpoint(path)


def test_corrupted_meta_and_unverified_damage(tmp_path):
    path = save_checkpoint(tmp_path / "c", tensors={"x": torch.ones(1000)}, arrays={"y": np.ones(1000)})
    # Damage that passes no manifest check is still caught by the parsers when verify=False.
    with open(path / "arrays.npz", "r+b") as f:
        f.truncate(200)
    with pytest.raises(CheckpointError, match="arrays.npz"):
        load_checkpoint(path, verify=False)
    (path / "meta.json").write_text('{"format": "mbpo_ros.checkpoint", "format_ver')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    (path / "meta.json").write_text(json.dumps({"format": "mbpo_ros.checkpoint", "format_version": 99,
                                                "files": {}, "meta": {}}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def _train(model, opt, steps, seed):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 5, generator=g)
        y = x.sum(dim=1, keepdim=True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_round_trip_continues_identically(tmp_path, amsgrad):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95), amsgrad=amsgrad)
    _train(model, opt, 5, seed=1)

    opt_t, opt_meta = flatten_state_dict(opt.state_dict(), "optim/")
    mod_t, mod_meta = flatten_state_dict(model.state_dict(), "model/")
    assert all(k.startswith("optim/") for k in opt_t) and opt_t
    json.dumps(opt_meta)  # plain JSON
    save_checkpoint(tmp_path / "c", tensors={**opt_t, **mod_t}, meta={"optim": opt_meta, "model": mod_meta})

    tensors, _, meta = load_checkpoint(tmp_path / "c")
    torch.manual_seed(123)  # different init: everything must come from the checkpoint
    model2 = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    model2.load_state_dict(unflatten_state_dict(tensors, meta["model"], "model/"))
    sd2 = unflatten_state_dict(tensors, meta["optim"], "optim/")
    opt2.load_state_dict(sd2)
    assert opt2.param_groups[0]["betas"] == (0.8, 0.95)
    assert opt2.param_groups[0]["lr"] == 1e-2
    assert set(sd2["state"]) == set(opt.state_dict()["state"])  # int keys preserved

    ref = _train(model, opt, 5, seed=2)
    got = _train(model2, opt2, 5, seed=2)
    assert ref == got
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_state_dict_encoding_edge_cases():
    sd = {"a": float("inf"), "b": (1, 2.5, None), 3: [torch.ones(2), {"d": torch.float16}], "e": np.float32(1.5)}
    t, m = flatten_state_dict(sd, "p/")
    assert list(t) == ["p/3.0"]
    back = unflatten_state_dict(t, json.loads(json.dumps(m, allow_nan=False)), "p/")
    assert back["a"] == float("inf") and back["b"] == (1, 2.5, None) and back["e"] == 1.5
    assert back[3][1]["d"] is torch.float16 and torch.equal(back[3][0], torch.ones(2))
    with pytest.raises(TypeError, match="no checkpoint encoding"):
        flatten_state_dict({"x": object()})
    with pytest.raises(CheckpointError, match="lacks"):
        unflatten_state_dict({}, m, "p/")


def test_is_checkpoint_recovers_aside_copy(tmp_path):
    path = save_checkpoint(tmp_path / "c", meta={"step": 3})
    os.rename(path, tmp_path / ".c.old")  # killed between the two renames of a save
    assert ckpt.is_checkpoint(path)
    assert load_checkpoint(path)[2] == {"step": 3}
    assert not ckpt.is_checkpoint(tmp_path / "missing")
