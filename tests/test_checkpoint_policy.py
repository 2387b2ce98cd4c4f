"""When a batch consumer writes its tables: the checkpoint policy of agents/batching.

The interval bounds what a crash replays; writing a tracker costs its whole history, so
in a long storm the wait grows with the cost of the last write (at most 1/COST_FACTOR
of the time spent writing), up to a cap; and a large set of waiting trackers is written
at once, so that one write never holds all of them in memory.
"""

from __future__ import annotations

import pytest

from slawatch.agents import batching
from slawatch.agents.batching import _Checkpoint


async def _noop() -> list[object]:
    return []


def _cp(*, unsaved: bool = True, cost: float = 0.0, pending: int | None = None,
        interval: float = 0.5) -> _Checkpoint:
    cp = _Checkpoint(_noop, interval, last=100.0, cost=cost,
                     pending=None if pending is None else (lambda: pending))
    if unsaved:
        cp.unsaved.append((None, 1, 1, None))  # type: ignore[arg-type]
    return cp


@pytest.mark.parametrize(("elapsed", "cost", "pending", "due"), [
    (0.4, 0.0, None, False),      # within the interval
    (0.5, 0.0, None, True),       # the interval is up
    (0.5, 0.05, None, False),     # the last write took 50 ms: wait 1 s
    (1.0, 0.05, None, True),
    (9.9, 5.0, None, False),      # a very slow write: the wait is capped ...
    (10.0, 5.0, None, True),      # ... at CHECKPOINT_MAX_INTERVAL
    (0.1, 0.0, 19_999, False),
    (0.1, 0.0, 20_000, True),     # enough waiting to write at once
    (0.1, 0.5, 25_000, True),
])
def test_when_a_checkpoint_is_due(elapsed: float, cost: float, pending: int | None,
                                  due: bool) -> None:
    assert batching.COST_FACTOR == 20.0 and batching.CHECKPOINT_MAX_INTERVAL == 10.0
    assert batching.MAX_PENDING == 20_000
    assert _cp(cost=cost, pending=pending).due(100.0 + elapsed) is due


def test_nothing_to_write_is_never_due() -> None:
    assert not _cp(unsaved=False, pending=50_000).due(1e9)
