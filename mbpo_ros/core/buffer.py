"""Replay buffers: preallocated ring buffers of transitions, stored as torch tensors on the device.

Storage is allocated once (``[capacity, dim]`` float32 tensors), so adding and sampling never
allocate per transition, and sampling happens where training runs (CPU or GPU) without a copy.
Oldest transitions are overwritten first once the buffer is full.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ReplayBuffer"]

FIELDS = ("obs", "act", "rew", "next_obs", "done")


class ReplayBuffer:
    """Ring buffer of (obs, act, rew, next_obs, done).

    Args:
        capacity: maximum number of transitions.
        obs_dim, act_dim: sizes.
        device: torch device of the storage.
    Attributes:
        obs, next_obs: [capacity, obs_dim]; act: [capacity, act_dim]; rew, done: [capacity] float32.
        size: number of valid transitions; ptr: next write position.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"):
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        self.device = torch.device(device)
        self.obs = torch.zeros(self.capacity, obs_dim, device=self.device)
        self.act = torch.zeros(self.capacity, act_dim, device=self.device)
        self.rew = torch.zeros(self.capacity, device=self.device)
        self.next_obs = torch.zeros(self.capacity, obs_dim, device=self.device)
        self.done = torch.zeros(self.capacity, device=self.device)
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, rew: float, next_obs, done: bool) -> None:
        """One transition (NumPy arrays / floats). obs, next_obs: [obs_dim]; act: [act_dim]."""
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        act = np.asarray(act, dtype=np.float32).reshape(-1)
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1)
        if obs.shape[0] != self.obs_dim or next_obs.shape[0] != self.obs_dim:
            raise ValueError(f"observation has {obs.shape[0]} values, the buffer stores {self.obs_dim}")
        if act.shape[0] != self.act_dim:
            raise ValueError(f"action has {act.shape[0]} values, the buffer stores {self.act_dim}")
        i = self.ptr
        self.obs[i] = torch.from_numpy(obs)
        self.act[i] = torch.from_numpy(act)
        self.rew[i] = float(rew)
        self.next_obs[i] = torch.from_numpy(next_obs)
        self.done[i] = float(bool(done))
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_batch(self, obs, act, rew, next_obs, done) -> None:
        """Many transitions (torch tensors on any device). obs, next_obs: [B, o]; act: [B, a]; rew, done: [B].

        If B exceeds the capacity only the last ``capacity`` transitions are kept.
        """
        n = int(obs.shape[0])
        if n == 0:
            return
        items = [obs, act, rew, next_obs, done.to(self.rew.dtype) if done.dtype == torch.bool else done]
        if n > self.capacity:
            items = [t[n - self.capacity :] for t in items]
            n = self.capacity
        first = min(n, self.capacity - self.ptr)
        for name, t in zip(FIELDS, items):
            dst = getattr(self, name)
            dst[self.ptr : self.ptr + first] = t[:first]
            if first < n:
                dst[: n - first] = t[first:]
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_indices(self, shape, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform random indices of valid transitions, LongTensor of the given shape."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, tuple(shape), generator=generator, device=self.device)

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(obs, act, rew, next_obs, done) at the indices (any index shape S -> [*S, dim])."""
        return tuple(getattr(self, name)[idx] for name in FIELDS)

    def chronological(self) -> tuple[torch.Tensor, ...]:
        """All valid transitions, oldest first: (obs [N, o], act, rew [N], next_obs, done [N])."""
        if self.size < self.capacity:
            return tuple(getattr(self, name)[: self.size] for name in FIELDS)
        order = torch.cat(
            [torch.arange(self.ptr, self.capacity, device=self.device), torch.arange(0, self.ptr, device=self.device)]
        )
        return tuple(getattr(self, name)[order] for name in FIELDS)

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the most recent min(size, capacity) transitions."""
        if capacity == self.capacity:
            return
        data = self.chronological()
        self.__init__(capacity, self.obs_dim, self.act_dim, self.device)
        self.add_batch(*data)

    def state(self, prefix: str, drop_last: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
        """Storage rows [0, size) as tensors ``{prefix}.obs`` ... in storage order, plus meta
        {capacity, size, ptr}, so a restored buffer samples exactly the same transitions.

        drop_last > 0: the state without the newest ``drop_last`` transitions, stored oldest first.
        """
        if drop_last:
            if not 0 <= drop_last <= self.size:
                raise ValueError(f"cannot leave out {drop_last} of {self.size} transitions")
            keep = self.size - int(drop_last)
            data = self.chronological()
            tensors = {f"{prefix}.{name}": t[:keep].detach().cpu().contiguous().clone() for name, t in zip(FIELDS, data)}
            return tensors, {"capacity": self.capacity, "size": keep, "ptr": keep % self.capacity}
        tensors = {
            f"{prefix}.{name}": getattr(self, name)[: self.size].detach().cpu().contiguous().clone() for name in FIELDS
        }
        return tensors, {"capacity": self.capacity, "size": self.size, "ptr": self.ptr}

    def load_state(self, prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Inverse of :meth:`state`."""
        self.__init__(int(meta["capacity"]), self.obs_dim, self.act_dim, self.device)
        size = int(meta["size"])
        for name in FIELDS:
            t = tensors[f"{prefix}.{name}"]
            if t.shape[0] != size:
                raise ValueError(f"{prefix}.{name}: checkpoint holds {t.shape[0]} transitions, meta says {size}")
            getattr(self, name)[:size] = t.to(self.device)
        self.size, self.ptr = size, int(meta["ptr"])
