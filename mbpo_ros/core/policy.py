"""PolicySnapshot: an immutable NumPy copy of the SAC actor, cheap enough for a control loop.

The control loop never touches torch (its thread pool stalls while training runs, see
docs/architecture.md, "Why training runs in a child process"); it evaluates this snapshot in NumPy (float32, a few tens of microseconds for one
observation) and its owner swaps in a new snapshot with one attribute assignment.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PolicySnapshot"]


class PolicySnapshot:
    """Tanh-Gaussian MLP policy in NumPy: ReLU hidden layers, output [mean, log_std].

    Args:
        weights: per layer ``[in, out]`` float32 arrays; biases: per layer ``[out]``.
        log_std_min, log_std_max: clamp of the log standard deviation.
        version: number of SAC updates behind this snapshot (informational).
    """

    __slots__ = ("_w", "_b", "obs_dim", "act_dim", "log_std_min", "log_std_max", "version", "_rng")

    def __init__(self, weights, biases, log_std_min: float = -20.0, log_std_max: float = 2.0, version: int = 0):
        if len(weights) != len(biases) or not weights:
            raise ValueError(f"policy has {len(weights)} weight and {len(biases)} bias arrays; need equal, >= 1")
        ws, bs = [], []
        for i, (w, b) in enumerate(zip(weights, biases)):
            w = np.array(w, dtype=np.float32, copy=True)
            b = np.array(b, dtype=np.float32, copy=True).reshape(-1)
            if w.ndim != 2 or w.shape[1] != b.shape[0]:
                raise ValueError(f"layer {i}: weight {w.shape} does not match bias {b.shape}")
            if ws and ws[-1].shape[1] != w.shape[0]:
                raise ValueError(f"layer {i}: takes {w.shape[0]} inputs, previous layer gives {ws[-1].shape[1]}")
            w.setflags(write=False)
            b.setflags(write=False)
            ws.append(w)
            bs.append(b)
        if ws[-1].shape[1] % 2:
            raise ValueError(f"last layer has {ws[-1].shape[1]} outputs; expected 2 * act_dim (mean, log_std)")
        self._w, self._b = tuple(ws), tuple(bs)
        self.obs_dim = ws[0].shape[0]
        self.act_dim = ws[-1].shape[1] // 2
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.version = int(version)
        self._rng = np.random.default_rng()

    def act(self, obs, deterministic: bool = True, rng: np.random.Generator | None = None) -> np.ndarray:
        """obs: [obs_dim] or [B, obs_dim] -> action [act_dim] or [B, act_dim] in [-1, 1] (float32).

        deterministic: tanh(mean); else tanh(mean + std * N(0, 1)) with ``rng`` (a private
        generator when None).
        """
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"observation has shape {np.shape(obs)}, policy expects [{self.obs_dim}] or [B, {self.obs_dim}]")
        last = len(self._w) - 1
        for i in range(last):
            x = x @ self._w[i]
            x += self._b[i]
            np.maximum(x, 0.0, out=x)
        out = x @ self._w[last] + self._b[last]
        mean = out[:, : self.act_dim]
        if deterministic:
            a = np.tanh(mean)
        else:
            log_std = np.clip(out[:, self.act_dim :], self.log_std_min, self.log_std_max)
            noise = (rng if rng is not None else self._rng).standard_normal(mean.shape).astype(np.float32)
            a = np.tanh(mean + np.exp(log_std) * noise)
        return a[0] if single else a

    __call__ = act

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for pipes and checkpoints): w0, b0, ..., plus meta as 1-element arrays."""
        d: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self._w, self._b)):
            d[f"w{i}"] = w
            d[f"b{i}"] = b
        d["log_std_bounds"] = np.array([self.log_std_min, self.log_std_max], dtype=np.float64)
        d["version"] = np.array([self.version], dtype=np.int64)
        return d

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> PolicySnapshot:
        """Inverse of :meth:`to_arrays`."""
        n = sum(1 for k in d if k.startswith("w") and k[1:].isdigit())
        if n == 0:
            raise ValueError(f"no policy layers in arrays {sorted(d)}")
        lo, hi = (float(v) for v in np.asarray(d.get("log_std_bounds", [-20.0, 2.0])).reshape(-1)[:2])
        version = int(np.asarray(d.get("version", [0])).reshape(-1)[0])
        return cls([d[f"w{i}"] for i in range(n)], [d[f"b{i}"] for i in range(n)], lo, hi, version)
