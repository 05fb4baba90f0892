"""Ring buffer: wrap-around, batch adds across the end, resize, state round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbpo_ros.core.buffer import ReplayBuffer


def _row(i: int):
    return np.full(3, i, np.float32), np.full(2, -i, np.float32), float(i), np.full(3, i + 0.5, np.float32), i % 2 == 0


def test_single_adds_wrap_and_overwrite_oldest():
    buf = ReplayBuffer(5, 3, 2)
    for i in range(7):
        buf.add(*_row(i))
    assert len(buf) == 5 and buf.ptr == 2
    # slots 0, 1 were overwritten by transitions 5, 6
    assert buf.rew.tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    obs, act, rew, nxt, done = buf.chronological()
    assert rew.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert torch.equal(obs[:, 0], rew) and torch.equal(act[:, 1], -rew) and torch.equal(nxt[:, 2], rew + 0.5)
    assert done.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_batch_add_wraps_across_the_end_and_keeps_the_newest():
    buf = ReplayBuffer(6, 1, 1)
    def batch(lo, hi):
        r = torch.arange(lo, hi, dtype=torch.float32)
        return r[:, None], r[:, None], r, r[:, None], torch.zeros(hi - lo, dtype=torch.bool)
    buf.add_batch(*batch(0, 4))
    buf.add_batch(*batch(4, 9))  # crosses the end: 4, 5 at the tail, 6, 7, 8 at the head
    assert buf.rew.tolist() == [6.0, 7.0, 8.0, 3.0, 4.0, 5.0] and buf.ptr == 3 and len(buf) == 6
    buf.add_batch(*batch(100, 110))  # larger than capacity: only the last 6 stay, in order
    assert buf.chronological()[2].tolist() == [104.0, 105.0, 106.0, 107.0, 108.0, 109.0]


def test_sampling_only_valid_rows_and_resize_keeps_newest():
    buf = ReplayBuffer(100, 1, 1)
    for i in range(10):
        buf.add(np.array([i]), np.array([0.0]), i, np.array([i]), False)
    idx = buf.sample_indices((50, 20), torch.Generator().manual_seed(0))
    assert idx.shape == (50, 20) and int(idx.max()) < 10 and int(idx.min()) >= 0
    obs, _, rew, _, _ = buf.gather(idx)
    assert obs.shape == (50, 20, 1) and torch.equal(obs[..., 0], rew)
    buf.resize(4)
    assert buf.capacity == 4 and buf.chronological()[2].tolist() == [6.0, 7.0, 8.0, 9.0]
    buf.resize(8)
    assert len(buf) == 4 and buf.ptr == 4


def test_state_round_trip_restores_layout_exactly():
    buf = ReplayBuffer(5, 3, 2)
    for i in range(8):
        buf.add(*_row(i))
    tensors, meta = buf.state("real")
    other = ReplayBuffer(1, 3, 2)
    other.load_state("real", tensors, meta)
    assert (other.capacity, other.size, other.ptr) == (5, 5, buf.ptr)
    for name in ("obs", "act", "rew", "next_obs", "done"):
        assert torch.equal(getattr(other, name), getattr(buf, name)), name
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(buf.gather(buf.sample_indices((9,), g1))[0], other.gather(other.sample_indices((9,), g2))[0])


def test_errors_explain_themselves():
    buf = ReplayBuffer(4, 3, 2)
    with pytest.raises(ValueError, match="observation has 2 values, the buffer stores 3"):
        buf.add(np.zeros(2), np.zeros(2), 0.0, np.zeros(2), False)
    with pytest.raises(ValueError, match="action has 3 values"):
        buf.add(np.zeros(3), np.zeros(3), 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buf.sample_indices((1,))
