"""Components no service lists: counted, tracked, but never allowed to grow memory.

A flood of made-up ids must neither exhaust memory nor create metric series. The last
state of the most recently seen ``capacity`` ids is kept (LRU) for the API, and the
number of distinct ids is exact up to ``capacity`` and a HyperLogLog estimate
(about 1% error) beyond it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

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

    def observe(self, component: str, state: State, ts: float) -> None:
        latest = self.latest
        prev = latest.get(component)
        if prev is None or ts >= prev[1]:
            latest[component] = (state, ts)
        latest.move_to_end(component)
        if len(latest) > self.capacity:
            latest.popitem(last=False)
        self._count(component)

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
