"""Atomic, unpickle-free checkpoints.

A checkpoint is a directory with three files::

    <path>/tensors.safetensors   torch tensors (safetensors; CPU, contiguous)
    <path>/arrays.npz            NumPy arrays (.npy members, never pickled)
    <path>/meta.json             plain JSON: format version, manifest, user meta

``meta.json`` holds ``{"format": "mbpo_ros.checkpoint", "format_version": 1,
"created_unix_ns": ..., "files": {name: {"bytes": n, "sha256": hex}}, "meta": {...}}``;
``load_checkpoint`` checks every file against the manifest before it parses it,
so a truncated or corrupted checkpoint is refused with a message naming the file.

Atomicity. ``save_checkpoint(path, ...)`` writes everything into a sibling
temporary directory ``.<name>.tmp-<pid>-<random>``, fsyncs the files and the
directory, then swaps it in:

1. rename ``path`` -> ``.<name>.old``  (the "aside" copy),
2. rename the temporary directory -> ``path``,
3. delete ``.<name>.old``.

A crash before step 1 leaves the old checkpoint at ``path``; between 1 and 2 only
the aside copy exists, and the next ``load_checkpoint``/``save_checkpoint`` renames
it back to ``path``; after 2 the new checkpoint is at ``path``. An exception while
writing removes the temporary directory and leaves ``path`` untouched. Stale
temporary directories of a killed writer are removed by the next save to the same
path (one writer per checkpoint path at a time is assumed).

Loading never unpickles: safetensors, ``np.load(allow_pickle=False)`` and ``json``.
Importing this module does not import torch (only writing and loading tensors does).

Refusals. ``save_checkpoint`` refuses (``CheckpointError``, nothing written, the
previous checkpoint kept) any NaN/Inf in a float tensor or array, except those listed in
``meta["non_finite_ok"]``.

Policy for deploy. A training checkpoint stores the policy snapshot's arrays
(``PolicySnapshot.to_arrays``) in ``arrays.npz`` under ``policy/``; ``load_policy(dir)``
reads only ``meta.json`` and ``arrays.npz`` and returns a NumPy ``PolicySnapshot``.

Optimiser state: ``flatten_state_dict(opt.state_dict(), "optim/")`` turns the nested
dicts/lists of tensors and Python scalars into flat tensors plus a JSON-safe
description; ``unflatten_state_dict`` rebuilds it for ``opt.load_state_dict``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from mbpo_ros.core.policy import PolicySnapshot

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "is_checkpoint",
    "load_policy",
    "load_meta",
    "resolve_checkpoint",
    "POLICY_PREFIX",
    "CHECKPOINT_DIRNAME",
    "flatten_state_dict",
    "unflatten_state_dict",
]

FORMAT_NAME = "mbpo_ros.checkpoint"
FORMAT_VERSION = 1
TENSORS_FILE = "tensors.safetensors"
ARRAYS_FILE = "arrays.npz"
META_FILE = "meta.json"
#: prefix of the policy snapshot's arrays (PolicySnapshot.to_arrays) in arrays.npz
POLICY_PREFIX = "policy/"
#: name of the training checkpoint directory inside a run directory
CHECKPOINT_DIRNAME = "checkpoint"
#: meta key: names of tensors/arrays allowed to hold NaN/Inf (e.g. +inf = "not measured yet")
NON_FINITE_OK_KEY = "non_finite_ok"
_HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, of an unknown format, or would need unpickling."""


# ----------------------------------------------------------------------------- paths


def _aside_path(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _fsync_dir(path: Path) -> None:
    """fsync a directory so that renames/creations inside it are durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and Windows) cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _recover(path: Path) -> None:
    """If a save was interrupted between its two renames, put the aside copy back at ``path``."""
    aside = _aside_path(path)
    if not path.exists() and aside.is_dir():
        os.rename(aside, path)
        _fsync_dir(path.parent)


def _file_digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_HASH_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return {"bytes": n, "sha256": h.hexdigest()}


# ----------------------------------------------------------------------------- writing


def _prepare_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detach, move to CPU, make contiguous, and clone any tensor that shares storage."""
    import torch

    out: dict[str, torch.Tensor] = {}
    storage_users: dict[int, int] = {}
    for key, t in tensors.items():
        if not isinstance(key, str):
            raise TypeError(f"tensor key {key!r} is a {type(key).__name__}, keys must be str")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{key!r}] is a {type(t).__name__}, expected torch.Tensor")
        c = t.detach().to("cpu").contiguous()
        out[key] = c
        if c.numel() > 0:
            ptr = c.untyped_storage().data_ptr()
            storage_users[ptr] = storage_users.get(ptr, 0) + 1
    for key, c in out.items():
        if c.numel() == 0:
            continue
        storage = c.untyped_storage()
        shared = storage_users[storage.data_ptr()] > 1
        partial = storage.nbytes() != c.numel() * c.element_size()
        if shared or partial:
            # safetensors refuses tensors that share memory; a clone owns exactly its own bytes.
            out[key] = c.clone()
    return out


def _check_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, a in arrays.items():
        if not isinstance(key, str):
            raise TypeError(f"array key {key!r} is a {type(key).__name__}, keys must be str")
        if not isinstance(a, np.ndarray):
            raise TypeError(f"arrays[{key!r}] is a {type(a).__name__}, expected numpy.ndarray")
        if a.dtype.hasobject:
            raise TypeError(
                f"arrays[{key!r}] has dtype {a.dtype} which holds Python objects and would need pickling; "
                "store numbers/strings (fixed-width dtype) or put the value in meta"
            )
        out[key] = a
    return out


def _refuse_non_finite(tensors: Mapping[str, torch.Tensor], arrays: Mapping[str, np.ndarray], meta: Mapping) -> None:
    """A NaN/Inf in a float tensor or array means training diverged: such a checkpoint is never written.

    meta["non_finite_ok"] may name tensors/arrays whose non-finite values mean something (e.g. +inf
    for "not measured yet"); they are exempt.
    """
    import torch

    ok = set(meta.get(NON_FINITE_OK_KEY) or ())
    bad = [k for k, t in tensors.items()
           if k not in ok and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all())]
    bad += [k for k, a in arrays.items()
            if k not in ok and a.dtype.kind in "fc" and a.size and not bool(np.isfinite(a).all())]
    if bad:
        shown = ", ".join(sorted(bad)[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"refusing to write a checkpoint with non-finite values (NaN/Inf) in {shown}; "
                              "the previous checkpoint is kept")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz (same layout as ``np.savez``), refusing any pickled member."""
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, a in arrays.items():
                with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _remove_stale_tmp(path: Path, keep: Path | None = None) -> None:
    prefix = _tmp_prefix(path)
    if not path.parent.is_dir():
        return
    for child in path.parent.iterdir():
        if child.name.startswith(prefix) and child != keep:
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    path: str | os.PathLike,
    *,
    tensors: Mapping[str, torch.Tensor] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
    meta: Mapping[str, Any] | None = None,
    allow_non_finite: bool = False,
) -> Path:
    """Atomically write a checkpoint directory at ``path`` and return its ``Path``.

    tensors: name -> torch.Tensor of any shape/device (stored on CPU, contiguous).
    arrays:  name -> np.ndarray of any shape; object dtypes are refused (TypeError).
    meta:    JSON-serialisable mapping (str keys; lists, numbers, strings, bools, None).
    allow_non_finite: by default a NaN/Inf in any float tensor or array raises
             ``CheckpointError`` before anything is written (a diverged learner must not
             replace the last good checkpoint), except in those named by
             ``meta["non_finite_ok"]`` (values whose non-finite state means something).

    An existing checkpoint at ``path`` is replaced only once the new one is complete
    on disk; if anything raises while writing, the previous one stays as it was.
    """
    from safetensors.torch import save_file as _st_save_file

    path = Path(path)
    tensors = _prepare_tensors(tensors or {})
    arrays = _check_arrays(arrays or {})
    if not allow_non_finite:
        _refuse_non_finite(tensors, arrays, meta or {})
    meta = dict(meta or {})
    try:
        meta_text = json.dumps(meta)  # validate early, before touching the disk
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint meta is not JSON-serialisable: {e}") from e

    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    aside = _aside_path(path)
    if aside.exists() and path.exists():
        shutil.rmtree(aside)  # left over from a save killed after its second rename
    tmp = path.parent / f"{_tmp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}"
    _remove_stale_tmp(path)
    tmp.mkdir()
    try:
        _st_save_file(tensors, tmp / TENSORS_FILE)
        _fsync_file(tmp / TENSORS_FILE)
        _write_npz(tmp / ARRAYS_FILE, arrays)
        manifest = {name: _file_digest(tmp / name) for name in (TENSORS_FILE, ARRAYS_FILE)}
        doc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_unix_ns": time.time_ns(),
            "files": manifest,
            "meta": json.loads(meta_text),
        }
        with open(tmp / META_FILE, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        # Swap: old -> aside, new -> path, delete aside. See the module docstring.
        had_old = path.exists()
        if had_old:
            os.rename(path, aside)
            _fsync_dir(path.parent)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _recover(path)
        raise
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------- reading


def _read_meta_doc(path: Path) -> dict[str, Any]:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {META_FILE} is missing")
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path} is corrupted (not valid JSON: {e})") from e
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt != FORMAT_NAME:
        raise CheckpointError(f"{meta_path} is not an {FORMAT_NAME} file (format={fmt!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format_version {version!r}; this mbpo_ros reads versions <= {FORMAT_VERSION}"
        )
    if not isinstance(doc.get("files"), dict) or not isinstance(doc.get("meta"), dict):
        raise CheckpointError(f"{meta_path} lacks its 'files' manifest or its 'meta' object")
    return doc


def _verify_manifest(path: Path, files: Mapping[str, Any], names: tuple[str, ...] = (TENSORS_FILE, ARRAYS_FILE)) -> None:
    for name in names:
        expected = files.get(name)
        if not isinstance(expected, dict):
            raise CheckpointError(f"{path / META_FILE}: manifest has no entry for {name}")
        fpath = path / name
        if not fpath.is_file():
            raise CheckpointError(f"{fpath} is missing")
        size = fpath.stat().st_size
        if size != expected.get("bytes"):
            raise CheckpointError(
                f"{fpath} is {size} bytes, the manifest says {expected.get('bytes')} (truncated or overwritten)"
            )
        digest = _file_digest(fpath)["sha256"]
        if digest != expected.get("sha256"):
            raise CheckpointError(f"{fpath} is corrupted: sha256 {digest} does not match the manifest")


def _load_npz(fpath: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(fpath, allow_pickle=False) as npz:
            for key in npz.files:
                out[key] = npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise CheckpointError(f"{fpath} contains a pickled (object) array; refusing to unpickle it") from e
        raise CheckpointError(f"{fpath} could not be read: {e}") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{fpath} could not be read: {e}") from e
    return out


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], dict[str, Any]]:
    """Load ``(tensors, arrays, meta)`` from a checkpoint directory written by ``save_checkpoint``.

    device: where tensors are placed ("cpu", "cuda", "cuda:1", ...).
    verify: check every file's size and sha256 against the manifest first (default; leave on).

    Raises ``CheckpointError`` (a ``ValueError``) for a missing, truncated, corrupted or
    pickle-bearing checkpoint. If ``path`` is missing but an interrupted save left the
    previous checkpoint aside, that copy is put back and loaded.
    """
    from safetensors.torch import load_file as _st_load_file

    path = Path(path)
    _recover(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}")
    doc = _read_meta_doc(path)
    if verify:
        _verify_manifest(path, doc["files"])
    try:
        tensors = _st_load_file(path / TENSORS_FILE, device=str(device))
    except Exception as e:  # safetensors raises its own SafetensorError for a bad header
        raise CheckpointError(f"{path / TENSORS_FILE} could not be read: {e}") from e
    arrays = _load_npz(path / ARRAYS_FILE)
    return tensors, arrays, doc["meta"]


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory, given it or a run directory holding ``checkpoint/``."""
    p = Path(path).expanduser()
    if (p / CHECKPOINT_DIRNAME).is_dir() and not (p / META_FILE).is_file():
        p = p / CHECKPOINT_DIRNAME
    if not p.exists() and not _aside_path(p).exists():
        raise FileNotFoundError(
            f"checkpoint {p} does not exist (give <run_dir>/{CHECKPOINT_DIRNAME} or the run directory)")
    return p


def load_policy(path: str | os.PathLike) -> PolicySnapshot:
    """The policy snapshot stored in a training checkpoint (or a run directory): NumPy only.

    Reads ``meta.json`` and ``arrays.npz`` (checked against the manifest) and nothing else: no
    torch import, no replay buffers, no MBPO object, so deploy needs neither torch nor the
    memory of the training run. Raises ``CheckpointError`` for a checkpoint without the policy
    arrays (written before they were stored) with the command that adds them.
    """
    from mbpo_ros.core.policy import PolicySnapshot

    path = resolve_checkpoint(path)
    _recover(path)
    doc = _read_meta_doc(path)
    _verify_manifest(path, doc["files"], (ARRAYS_FILE,))
    arrays = _load_npz(path / ARRAYS_FILE)
    policy = {k[len(POLICY_PREFIX):]: v for k, v in arrays.items() if k.startswith(POLICY_PREFIX)}
    if not policy:
        raise CheckpointError(
            f"{path} holds no policy arrays ({POLICY_PREFIX}*; written by an older mbpo_ros); add them with: "
            f"python -m mbpo_ros.io.convert {path}")
    try:
        return PolicySnapshot.from_arrays(policy)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: the policy arrays are inconsistent: {e}") from e


def load_identity(path: str | os.PathLike) -> dict[str, Any]:
    """The arm and task a checkpoint was trained for, from its meta.json (no other file is read):
    ``{"task": ArmTask.settings() or None, "robot": core.identity.robot_identity(...) or None}``;
    both None for a checkpoint written before they were recorded (Reach on the bundled arm)."""
    path = resolve_checkpoint(path)
    _recover(path)
    identity = _read_meta_doc(path).get("meta", {}).get("identity") or {}
    return {"task": identity.get("task"), "robot": identity.get("robot")}


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's ``meta`` object from its meta.json alone (no tensors are read)."""
    path = resolve_checkpoint(path)
    _recover(path)
    return dict(_read_meta_doc(path).get("meta", {}))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory with a readable mbpo_ros ``meta.json`` (files not hashed).

    Like ``load_checkpoint``, it first puts back the aside copy left by an interrupted save.
    """
    path = Path(path)
    try:
        _recover(path)
    except OSError:
        return False
    try:
        _read_meta_doc(path)
    except CheckpointError:
        return False
    return True


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The most recently written checkpoint directory directly under ``run_dir``, or None.

    Hidden temporary/aside directories are ignored (an aside copy whose checkpoint is
    missing is first recovered). Ordered by the creation time recorded in meta.json.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    for child in list(run_dir.iterdir()):
        if child.name.startswith(".") and child.name.endswith(".old"):
            _recover(run_dir / child.name[1:-4])
    best: tuple[int, str] | None = None
    best_path: Path | None = None
    for child in run_dir.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            doc = _read_meta_doc(child)
        except CheckpointError:
            continue
        created = doc.get("created_unix_ns")
        key = (created if isinstance(created, int) else 0, child.name)
        if best is None or key > best:
            best, best_path = key, child
    return best_path


# ----------------------------------------------------------------------------- state dicts


def flatten_state_dict(sd: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """``core.state_dict.flatten_state_dict`` (the encoding lives in core; re-exported here)."""
    from mbpo_ros.core.state_dict import flatten_state_dict as _flatten

    return _flatten(sd, prefix)


def unflatten_state_dict(tensors: Mapping[str, Any], meta: Any, prefix: str = "") -> Any:
    """``core.state_dict.unflatten_state_dict``; a broken skeleton raises ``CheckpointError``."""
    from mbpo_ros.core.state_dict import StateDictError
    from mbpo_ros.core.state_dict import unflatten_state_dict as _unflatten

    try:
        return _unflatten(tensors, meta, prefix)
    except StateDictError as e:
        raise CheckpointError(str(e)) from e
