"""IdSet: which transition-log records a learner holds, as sorted half-open ranges (JSON-able).

Log ids grow by one per logged transition within a session (io.transition_log.log_id), so a
learner that received every record holds one range per session: the checkpoint's record of what
it holds stays a few numbers long however long the run.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["IdSet"]


class IdSet:
    """A set of non-negative ints stored as disjoint, sorted [start, end) ranges."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self._starts, x) - 1
        return i >= 0 and x < self._ends[i]

    def __len__(self) -> int:
        return sum(b - a for a, b in zip(self._starts, self._ends))

    def add(self, x: int) -> bool:
        """Add x; False if it was already there. O(1) when x extends the last range."""
        x = int(x)
        if x < 0:
            raise ValueError(f"log id {x} is negative")
        if self._ends and self._ends[-1] == x:
            self._ends[-1] = x + 1
            return True
        if self._ends and x > self._ends[-1]:
            self._starts.append(x)
            self._ends.append(x + 1)
            return True
        i = bisect.bisect_right(self._starts, x) - 1
        if i >= 0 and x < self._ends[i]:
            return False
        left = i >= 0 and self._ends[i] == x
        right = i + 1 < len(self._starts) and self._starts[i + 1] == x + 1
        if left and right:
            self._ends[i] = self._ends[i + 1]
            del self._starts[i + 1], self._ends[i + 1]
        elif left:
            self._ends[i] = x + 1
        elif right:
            self._starts[i + 1] = x
        else:
            self._starts.insert(i + 1, x)
            self._ends.insert(i + 1, x + 1)
        return True

    def discard(self, x: int) -> None:
        i = bisect.bisect_right(self._starts, x) - 1
        if i < 0 or x >= self._ends[i]:
            return
        a, b = self._starts[i], self._ends[i]
        del self._starts[i], self._ends[i]
        if x + 1 < b:
            self._starts.insert(i, x + 1)
            self._ends.insert(i, b)
        if a < x:
            self._starts.insert(i, a)
            self._ends.insert(i, x)

    def copy(self) -> IdSet:
        out = IdSet()
        out._starts, out._ends = list(self._starts), list(self._ends)
        return out

    def ranges(self) -> list[list[int]]:
        """[[start, end), ...] sorted: the JSON form."""
        return [[a, b] for a, b in zip(self._starts, self._ends)]

    @classmethod
    def from_ranges(cls, ranges: Iterable[Iterable[int]]) -> IdSet:
        out = cls()
        prev_end = -1
        for r in ranges:
            a, b = (int(x) for x in r)
            if not (0 <= a < b and a > prev_end):
                raise ValueError(f"id ranges must be sorted, disjoint and non-empty; got [{a}, {b}) after {prev_end}")
            out._starts.append(a)
            out._ends.append(b)
            prev_end = b
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdSet) and self.ranges() == other.ranges()

    def __repr__(self) -> str:
        return f"IdSet({self.ranges()})"
