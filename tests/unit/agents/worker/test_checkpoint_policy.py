"""When a batch consumer writes its tables: the checkpoint policy of agents/batching.

The interval bounds what a crash replays; writing a tracker costs its whole history, so
in a long storm the wait grows with the cost of the last write (at most 1/COST_FACTOR
of the time spent writing), up to a cap; and a large set of waiting trackers is written
at once, so that one write never holds all of them in memory.
"""

from __future__ import annotations

import pytest

from agents.worker import batching
from agents.worker.batching import _Checkpoint


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


class _Consumer:
    """What ``BatchConsumer.checkpoint`` uses of its consumer."""

    def __init__(self) -> None:
        self._expect = {"tp": 0}
        self._send_error: BaseException | None = None
        self.batch_stats = batching.BatchStats()
        self.tracked: list[tuple[object, int]] = []

    _gather = staticmethod(batching.BatchConsumer._gather)

    def _track(self, tp: object, end: int, count: int, fut: object) -> None:
        self.tracked.append((tp, end))


def test_a_checkpoint_writes_only_after_its_batches_sends_are_on_the_broker() -> None:
    import asyncio

    async def scenario() -> tuple[list[bool], list[tuple[object, int]]]:
        loop = asyncio.get_running_loop()
        sent = loop.create_future()
        seen: list[bool] = []

        async def write() -> list[object]:
            seen.append(sent.done())
            return []

        cp = _Checkpoint(write, 0.5)
        cp.unsaved.append(("tp", 10, 10, sent))  # type: ignore[arg-type]
        loop.call_later(0.05, sent.set_result, None)
        consumer = _Consumer()
        await batching.BatchConsumer.checkpoint(consumer, cp)  # type: ignore[arg-type]
        return seen, consumer.tracked

    seen, tracked = asyncio.run(scenario())
    assert seen == [True]
    assert tracked == [("tp", 10)]


def test_a_failed_send_stops_the_checkpoint_before_it_writes() -> None:
    import asyncio

    async def scenario() -> tuple[list[str], _Consumer, BaseException | None]:
        loop = asyncio.get_running_loop()
        sent = loop.create_future()
        calls: list[str] = []

        async def write() -> list[object]:
            calls.append("write")
            return []

        cp = _Checkpoint(write, 0.5)
        cp.unsaved.append(("tp", 10, 10, sent))  # type: ignore[arg-type]
        loop.call_later(0.01, sent.set_exception, OSError("broker gone"))
        consumer = _Consumer()
        try:
            await batching.BatchConsumer.checkpoint(consumer, cp)  # type: ignore[arg-type]
        except OSError as exc:
            return calls, consumer, exc
        return calls, consumer, None

    calls, consumer, exc = asyncio.run(scenario())
    assert calls == [] and isinstance(exc, OSError)
    assert consumer._send_error is exc and consumer.tracked == []


def test_the_cost_of_a_checkpoint_runs_until_its_writes_are_acknowledged() -> None:
    """The wait before the next checkpoint grows with how long the writes took to reach
    the broker, not only with the hand-off to the producer."""
    import asyncio

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        acked = loop.create_future()

        async def write() -> list[object]:
            return [acked]

        cp = _Checkpoint(write, 0.5)
        cp.unsaved.append(("tp", 10, 10, None))  # type: ignore[arg-type]
        loop.call_later(0.2, acked.set_result, None)
        consumer = _Consumer()
        await batching.BatchConsumer.checkpoint(consumer, cp)  # type: ignore[arg-type]
        handed = cp.cost
        await acked
        await asyncio.sleep(0)  # the done callbacks
        return handed, cp.cost

    handed, cost = asyncio.run(scenario())
    assert handed < 0.1 and 0.2 <= cost < 5.0
    cp = _cp(cost=cost)
    assert not cp.due(100.0 + 0.5)  # the interval alone is up, the cost's wait is not
    assert cp.due(100.0 + batching.COST_FACTOR * cost)


def test_a_partitions_batches_become_committable_together() -> None:
    """All batches of a partition since the last checkpoint are one entry in flight
    (a slow write must not fill MAX_INFLIGHT with batches waiting on it), at the last
    batch's end; a batch whose send failed still fails that entry."""
    import asyncio

    async def scenario() -> tuple[list[tuple[object, int]], list[object]]:
        loop = asyncio.get_running_loop()
        failed = loop.create_future()
        failed.set_exception(OSError("lost"))
        ok = loop.create_future()
        ok.set_result(None)
        tracked_futs: list[object] = []

        async def write() -> list[object]:
            return []

        cp = _Checkpoint(write, 0.5)
        for end in range(1, 40):
            cp.unsaved.append(("a", end * 10, 10, ok))  # type: ignore[arg-type]
        cp.unsaved.append(("b", 5, 5, failed))  # type: ignore[arg-type]
        cp.unsaved.append(("b", 9, 4, None))  # type: ignore[arg-type]
        consumer = _Consumer()
        consumer._expect = {"a": 0, "b": 0}

        def track(tp: object, end: int, count: int, fut: object) -> None:
            consumer.tracked.append((tp, end))
            tracked_futs.append(fut)

        consumer._track = track  # type: ignore[method-assign]
        await batching.BatchConsumer.checkpoint(consumer, cp)  # type: ignore[arg-type]
        return consumer.tracked, tracked_futs

    tracked, futs = asyncio.run(scenario())
    assert tracked == [("a", 390), ("b", 9)]
    assert futs[0] is None  # nothing written, every send done: committable at once
    assert futs[1] is not None and futs[1].exception() is not None  # type: ignore[attr-defined]


def test_after_a_quiet_spell_the_interval_counts_from_the_first_batch_not_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a crash replays is what came since the first batch not yet written: the
    interval bounds that, and the first batch after a quiet spell is not written at once
    (it was, and every tracker a burst changed was written again an interval later).
    While batches keep coming, one comes an interval after the last one."""
    import asyncio
    from dataclasses import dataclass
    from types import SimpleNamespace

    from faust.types import TP

    @dataclass(frozen=True)
    class Record:
        offset: int

    clock = [1000.0]
    monkeypatch.setattr(batching, "perf_counter", lambda: clock[0])
    tp = TP("in", 0)
    cp = _Checkpoint(_noop, 0.5, last=100.0)  # the last write 900 s ago
    consumer = SimpleNamespace(
        batch_lock=asyncio.Lock(), batch_stats=batching.BatchStats(), _expect={tp: 0},
        _carry={}, _carry_held={}, _held={}, _aligners={}, _checkpoint_of={"in": cp},
        app=SimpleNamespace(consumer_generation_id=1),
        _gather=batching.BatchConsumer._gather, _track=lambda *_: None)

    async def handler(batch: dict[TP, object]) -> list[object]:
        return []

    def batch(at: float, offset: int) -> None:
        clock[0] = at
        asyncio.run(batching.BatchConsumer._run(  # type: ignore[arg-type]
            consumer, handler, {tp: [Record(offset)]}, 1))

    assert not cp.due(1000.0)
    batch(1000.0, 0)
    assert not cp.due(1000.1) and not cp.due(1000.49)
    batch(1000.3, 1)  # a later batch does not move the start
    assert cp.due(1000.5)
    cp.unsaved.clear()
    cp.last = 1000.5  # written
    batch(1000.5, 2)  # batches keep coming: an interval after the last write
    assert not cp.due(1000.9) and cp.due(1001.0)
