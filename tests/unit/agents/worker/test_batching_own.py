"""Records this worker wrote are processed from their send, exactly once, in order.

``BatchConsumer.apply_own`` hands a record the broker acknowledged to its topic's
handler at once when everything before it in its partition is processed; the fetch
that brings it back later skips it. Generated here: partitions, which of their records
this worker wrote (the others another worker's), how the fetches cut the log, and when
each acknowledgement arrives relative to the fetches (before the fetch that brings the
record, after it, or while that fetch waits for the batch lock). What a user would
check: every record reaches the handler once, in offset order per partition, and the
consumer's position ends after the last record.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.worker.batching import BatchConsumer, BatchStats, _run_from

TOPIC = "segments"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int


class Consumer(SimpleNamespace):
    """The state and methods the own path and the drain loop's batch path use."""

    _admit = BatchConsumer._admit
    _run = BatchConsumer._run
    _moved = BatchConsumer._moved
    apply_own = BatchConsumer.apply_own
    _apply_own = BatchConsumer._apply_own
    _gather = staticmethod(BatchConsumer._gather)


def _consumer(tps: list[TP], handler: Any) -> Any:
    sought = asyncio.Event()
    sought.set()
    seeks: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    consumer = Consumer(
        batch_lock=asyncio.Lock(), batch_stats=BatchStats(),
        _expect=dict.fromkeys(tps, 0), _carry={}, _carry_held={}, _held={}, _aligners={},
        _checkpoint_of={}, _gap_at={}, _inflight={}, _sought=sought,
        app=SimpleNamespace(consumer_generation_id=1), flow_active=True, should_stop=False,
        batch_handlers={TOPIC: handler}, _own={}, _own_task=None, _own_error=None,
        seek=seek, seeks=seeks)
    consumer._track = lambda *_: None
    return consumer


def _recorder() -> tuple[list[int], Any]:
    """A handler that records the offsets it is handed, and that list."""
    got: list[int] = []

    async def handler(batch: dict[TP, Any]) -> list[Any]:
        got.extend(r.offset for recs in batch.values() for r in recs)
        return []

    return got, handler


async def _settle(consumer: Any) -> None:
    """Until the own path has handled (or left) everything it took."""
    while consumer._own_task is not None:
        await asyncio.sleep(0)


@st.composite
def logs(draw: st.DrawFn) -> tuple[dict[TP, list[bool]], dict[TP, list[list[int]]],
                                   dict[TP, list[int]], list[int]]:
    """Per partition: which records are this worker's, the fetches that bring the log,
    the fetch step at which each own record's acknowledgement arrives (in offset
    order, as a producer's are); and how long each handler call yields."""
    n = draw(st.integers(1, 3))
    own, fetches, acks = {}, {}, {}
    for p in range(n):
        tp = TP(TOPIC, p)
        total = draw(st.integers(1, 30))
        own[tp] = draw(st.lists(st.booleans(), min_size=total, max_size=total))
        cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=5))) if total > 1 else []
        bounds = [0, *cuts, total]
        fetches[tp] = [list(range(a, b)) for a, b in itertools.pairwise(bounds)]
        mine = sum(own[tp])
        acks[tp] = sorted(draw(st.lists(st.integers(0, len(fetches[tp])),
                                        min_size=mine, max_size=mine)))
    yields = draw(st.lists(st.integers(0, 3), min_size=1, max_size=6))
    return own, fetches, acks, yields


@settings(max_examples=200, deadline=None)
@given(logs())
def test_every_record_is_handled_once_in_order(case: tuple[Any, Any, Any, list[int]]) -> None:
    own, fetches, acks, yields = case
    handled: dict[TP, list[int]] = {tp: [] for tp in own}
    calls = [0]

    async def handler(batch: dict[TP, Any]) -> list[Any]:
        for tp, recs in batch.items():
            handled[tp].extend(r.offset for r in recs)
        calls[0] += 1
        for _ in range(yields[calls[0] % len(yields)]):
            await asyncio.sleep(0)  # the own path and the drain loop interleave here
        return []

    async def drive() -> Any:
        consumer = _consumer(list(own), handler)
        # the acknowledgements due before each fetch step, per partition in offset order
        due: dict[int, list[Record]] = {}
        for tp, flags in own.items():
            mine = [o for o, m in enumerate(flags) if m]
            for offset, step in zip(mine, acks[tp], strict=True):
                due.setdefault(step, []).append(Record(TOPIC, tp.partition, offset))
        steps = max(len(f) for f in fetches.values())
        pending = {tp: list(parts) for tp, parts in fetches.items()}
        for step in range(steps + 1):
            for rec in due.get(step, []):
                consumer.apply_own(rec)  # a send's done callback
            await asyncio.sleep(0)
            if step == steps:
                break
            batch = {}
            for tp, parts in pending.items():
                if parts:
                    recs = [Record(TOPIC, tp.partition, o) for o in parts.pop(0)]
                    admitted = await consumer._admit(tp, recs, 1)
                    if admitted:
                        batch[tp] = admitted
            if batch:
                await consumer._run(handler, batch, 1)
        await _settle(consumer)
        return consumer

    consumer = asyncio.run(drive())
    for tp, flags in own.items():
        assert handled[tp] == list(range(len(flags))), tp
        assert consumer._expect[tp] == len(flags)
    assert consumer.seeks == [] and consumer._own_error is None
    assert consumer.batch_stats.dropped == 0


def test_an_acknowledged_record_is_handled_before_any_fetch() -> None:
    """The point of the path: no fetch needed for a record at the position."""
    got, handler = _recorder()

    async def run() -> Any:
        tp = TP(TOPIC, 0)
        consumer = _consumer([tp], handler)
        consumer._expect[tp] = 5
        consumer.apply_own(Record(TOPIC, 0, 5))
        consumer.apply_own(Record(TOPIC, 0, 6))
        consumer.apply_own(Record(TOPIC, 0, 8))  # after another writer's 7: waits
        await _settle(consumer)
        return consumer

    consumer = asyncio.run(run())
    assert got == [5, 6]
    assert consumer._expect[TP(TOPIC, 0)] == 7 and consumer.batch_stats.own == 2


def test_nothing_is_handled_from_sends_while_a_rebalance_stops_the_flow() -> None:
    got, handler = _recorder()

    async def run() -> None:
        tp, other = TP(TOPIC, 0), TP(TOPIC, 1)
        consumer = _consumer([tp], handler)
        consumer.apply_own(Record(TOPIC, 1, 0))  # a partition this worker does not own
        consumer.flow_active = False
        consumer.apply_own(Record(TOPIC, 0, 0))
        consumer.flow_active = True
        consumer._sought.clear()  # assigned, the seek to committed not done yet
        consumer.apply_own(Record(TOPIC, 0, 0))
        await _settle(consumer)
        assert consumer._expect == {tp: 0} and other not in consumer._expect

    asyncio.run(run())
    assert got == []


def test_a_handler_error_on_the_own_path_is_kept_for_the_drain_loop() -> None:
    """The drain loop raises it, which stops the worker as a handler error there does."""

    async def handler(batch: dict[TP, Any]) -> list[Any]:
        raise RuntimeError("broken")

    async def run() -> Any:
        consumer = _consumer([TP(TOPIC, 0)], handler)
        consumer.apply_own(Record(TOPIC, 0, 0))
        await _settle(consumer)
        return consumer

    consumer = asyncio.run(run())
    assert isinstance(consumer._own_error, RuntimeError)


def test_a_run_starts_at_the_position_and_stops_at_a_hole() -> None:
    recs = [Record(TOPIC, 0, o) for o in (3, 4, 5, 6, 8, 9)]
    assert [r.offset for r in _run_from(recs, 4)] == [4, 5, 6]
    assert _run_from(recs, 7) == []
    assert [r.offset for r in _run_from(recs, 8)] == [8, 9]


def test_a_revoke_that_begins_while_the_record_waits_for_the_lock_leaves_it_to_the_log() -> None:
    """The revoke's checkpoint holds the batch lock; what the own path applied after it
    would be in no checkpoint of this owner. The fetch path's batches are judged by
    the generation; these are not applied once the flow stopped."""
    got, handler = _recorder()

    async def run() -> Any:
        tp = TP(TOPIC, 0)
        consumer = _consumer([tp], handler)
        await consumer.batch_lock.acquire()  # the revoke's checkpoint
        consumer.apply_own(Record(TOPIC, 0, 0))
        await asyncio.sleep(0)
        consumer.flow_active = False
        consumer.batch_lock.release()
        await _settle(consumer)
        return consumer

    consumer = asyncio.run(run())
    assert got == [] and consumer._expect[TP(TOPIC, 0)] == 0
