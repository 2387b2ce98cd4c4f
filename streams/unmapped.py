"""Components no service lists: counted, tracked, but never allowed to grow memory.

A flood of made-up ids must neither exhaust memory nor create metric series. The last
state of the most recently seen ``capacity`` ids is kept (LRU) for the API, and the
number of distinct ids is exact up to ``capacity`` and a HyperLogLog estimate
(about 1% error) beyond it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from streams.states import State

_P = 14  # 16384 registers: ~0.8% standard error, 16 KiB
_M = 1 << _P
_ALPHA = 0.7213 / (1 + 1.079 / _M)


class UnmappedTracker:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.latest: OrderedDict[str, tuple[State, float]] = OrderedDict()
        self._exact: set[str] | None = set()
        self._registers = bytearray(_M)
        self.top = SpaceSaving()  # the most frequent ones, by events

    def observe(self, component: str, state: State, ts: float) -> None:
        latest = self.latest
        prev = latest.get(component)
        if prev is None or ts >= prev[1]:
            latest[component] = (state, ts)
        latest.move_to_end(component)
        if len(latest) > self.capacity:
            latest.popitem(last=False)
        self._count(component)
        self.top.add(component)

    def _count(self, component: str) -> None:
        h = int.from_bytes(hashlib.blake2b(component.encode(), digest_size=8).digest(), "big")
        idx = h >> (64 - _P)
        rest = (h << _P) & ((1 << 64) - 1)
        rank = 1
        while rank <= 64 - _P and not rest & (1 << 63):
            rank += 1
            rest <<= 1
        if rank > self._registers[idx]:
            self._registers[idx] = rank
        if self._exact is not None:
            self._exact.add(component)
            if len(self._exact) > self.capacity:
                self._exact = None  # from here on the estimate is the count

    def count(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        import math

        inv = sum(2.0 ** -r for r in self._registers)
        estimate = _ALPHA * _M * _M / inv
        zeros = self._registers.count(0)
        if estimate <= 2.5 * _M and zeros:
            estimate = _M * math.log(_M / zeros)
        return max(round(estimate), self.capacity + 1)


class SpaceSaving:
    """The components seen most often, in bounded memory (Metwally et al.'s space-saving).

    At most ``capacity`` counters (400: four times the 100 reported, so the report's
    tail is reliable too; 16 KiB or so stored per input partition): an id not counted
    yet takes over the counter of one with the least count, inheriting that count as
    its ``error``. Every id seen more than
    ``n / capacity`` times (``n`` all observations) is among the counters, and for each
    counter ``count - error <= true count <= count``. Counters are kept in buckets by
    count, so each observation is O(1) whatever the flood.
    """

    __slots__ = ("_buckets", "_counts", "_min", "capacity", "n")

    def __init__(self, capacity: int = 400) -> None:
        self.capacity = capacity
        self.n = 0
        self._counts: dict[str, list[int]] = {}  # id -> [count, error]
        self._buckets: dict[int, dict[str, None]] = {}  # count -> ids (insertion-ordered)
        self._min = 0

    def add(self, item: str) -> None:
        self.n += 1
        counts, buckets = self._counts, self._buckets
        entry = counts.get(item)
        if entry is None:
            if len(counts) < self.capacity:
                entry = counts[item] = [0, 0]
            else:  # take over a least counted one: its count becomes our error
                m = self._min
                low = buckets[m]
                victim = next(iter(low))
                del low[victim]
                if not low:
                    del buckets[m]
                del counts[victim]
                entry = counts[item] = [m, m]
        else:
            bucket = buckets[entry[0]]
            del bucket[item]
            if not bucket:
                del buckets[entry[0]]
        entry[0] += 1
        c = entry[0]
        buckets.setdefault(c, {})[item] = None
        if c == 1:
            self._min = 1
        elif c - 1 == self._min and c - 1 not in buckets:
            self._min = c  # the last of the least counted moved up

    def top(self, k: int = 100) -> list[tuple[str, int, int]]:
        """Up to ``k`` (id, count, error), most counted first (ties by id)."""
        items = sorted(self._counts.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        return [(c, v[0], v[1]) for c, v in items]

    def to_obj(self) -> list[list[Any]]:
        return [[c, v[0], v[1]] for c, v in self._counts.items()]

    @classmethod
    def from_obj(cls, obj: list[list[Any]], n: int = 0, capacity: int = 400) -> SpaceSaving:
        out = cls(capacity)
        for c, count, err in obj:
            out._counts[str(c)] = [int(count), int(err)]
            out._buckets.setdefault(int(count), {})[str(c)] = None
        out._min = min(out._buckets) if out._buckets else 0
        out.n = n or sum(v[0] for v in out._counts.values())
        return out


def merge_top(sketches: list[SpaceSaving], k: int = 100) -> list[tuple[str, int, int]]:
    """The top ``k`` over sketches of disjoint ids (each component's events go to one
    input partition): the union, most counted first."""
    rows = [row for s in sketches for row in s._counts.items()]
    rows.sort(key=lambda kv: (-kv[1][0], kv[0]))
    return [(c, v[0], v[1]) for c, v in rows[:k]]
