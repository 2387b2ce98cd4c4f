"""A fetch that arrives while an assignment's seek (and its hooks) is still running is
processed only once the seek is done.

The hooks read back what a crashed predecessor dead-lettered and decide the routing of
the input; a batch classified before that sent the predecessor's rejections to the DLQ
again (issue 18). The seek sets the expected offsets before it runs the hooks, so the
expected offset being known is not enough.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from agents.worker import batching
from agents.worker.batching import BatchConsumer, BatchStats

TOPIC_PARTITION = TP("component-events", 0)


@dataclass
class Record:
    offset: int


def _consumer(expect: int | None) -> Any:
    """The state ``_admit`` reads, as the seek leaves it before its hooks have run."""
    return SimpleNamespace(
        batch_stats=BatchStats(), _sought=asyncio.Event(),
        _expect={} if expect is None else {TOPIC_PARTITION: expect},
        app=SimpleNamespace(consumer_generation_id=1), _gap_at={},
        _inflight={})


def test_records_wait_for_the_seek_hooks() -> None:
    async def run() -> None:
        consumer = _consumer(expect=5)
        records = [Record(5), Record(6)]
        admit = asyncio.ensure_future(BatchConsumer._admit(consumer, TOPIC_PARTITION,
                                                           records, 1))
        await asyncio.sleep(0.1)
        assert not admit.done(), "a batch was admitted while the seek hooks ran"
        consumer._sought.set()
        assert list(await admit) == records

    asyncio.run(run())


def test_records_of_an_older_generation_are_dropped_after_the_wait() -> None:
    async def run() -> None:
        consumer = _consumer(expect=5)
        admit = asyncio.ensure_future(BatchConsumer._admit(consumer, TOPIC_PARTITION,
                                                           [Record(5)], 1))
        await asyncio.sleep(0.05)
        consumer.app.consumer_generation_id = 2
        consumer._sought.set()
        assert list(await admit) == []
        assert consumer.batch_stats.dropped == 1

    asyncio.run(run())


def test_a_seek_that_does_not_end_drops_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never process them unsought; they are fetched again (the next fetch starts past
    the expected offset, which seeks back)."""
    monkeypatch.setattr(batching, "SEEK_WAIT", 0.05)

    async def run() -> None:
        consumer = _consumer(expect=5)
        got = await BatchConsumer._admit(consumer, TOPIC_PARTITION, [Record(5)], 1)
        assert list(got) == [] and consumer.batch_stats.dropped == 1

    asyncio.run(run())



class _Handling:
    """The state ``_handle_fetch`` reads, recording what it puts back and handles."""

    def __init__(self, *, flow_active: bool, active: Any = None) -> None:
        self.unfetched: list[dict[TP, list[int]]] = []
        self.handled: list[Any] = []
        self.seeks = 0
        self.callback = self._deliver
        self.delivered: list[Any] = []
        self.batch_handlers = {TOPIC_PARTITION.topic: self._handler}
        self._to_message = lambda tp, rec: (tp, rec.offset)
        self._read_offset: dict[TP, Any] = defaultdict(lambda: None)
        self.app = SimpleNamespace(monitor=SimpleNamespace(track_tp_end_offset=lambda *a: None),
                                   topics=SimpleNamespace(acks_enabled_for=lambda t: False),
                                   consumer_generation_id=1)
        self._carry: dict[TP, Any] = {}
        self.flow_active = flow_active
        self.should_stop = False
        self.batch_stats = BatchStats()
        self._held: dict[TP, Any] = {}
        self._active = active
        self._buffered_partitions: set[TP] = set()
        self._commit_every = None
        self.suspend_flow = asyncio.Event()

    async def _deliver(self, message: Any) -> None:
        self.delivered.append(message)

    async def _handler(self, batch: Any) -> list[Any]:
        self.handled.append(batch)
        return []

    async def _maybe_checkpoint(self) -> None:
        return None

    async def perform_seek(self) -> None:
        self.seeks += 1

    async def _unfetch(self, records: Any) -> None:
        self.unfetched.append({tp: [r.offset for r in recs] for tp, recs in records.items()})

    def highwater(self, tp: TP) -> int:
        return 0

    async def wait_first(self, *coros: Any) -> None:
        await coros[0]
        for c in coros[1:]:
            c.close()

    async def _admit(self, tp: TP, recs: Any, generation: int) -> Any:
        return recs

    async def _run(self, handler: Any, batch: Any, generation: int) -> None:
        await handler(batch)


CHANGELOG = TP("slawatch-components-changelog", 0)


def test_a_fetch_that_returns_after_the_flow_stopped_is_put_back_not_sought() -> None:
    """A rebalance stopped the flow while the fetch was out: nothing of it is processed,
    every partition's records are put back (their positions, ``_unfetch``), and the
    drain loop does not seek to committed itself. Faust's getmany does; that left the
    changelog records fetched after Recovery's seek consumed and undelivered, and the
    recovery waited for them for good (the worker stayed unready)."""
    c = _Handling(flow_active=False)
    records = {TOPIC_PARTITION: [Record(5), Record(6)], CHANGELOG: [Record(0), Record(1)]}
    asyncio.run(BatchConsumer._handle_fetch(c, records, None))  # type: ignore[arg-type]
    assert c.seeks == 0 and c.handled == [] and c.delivered == []
    assert c.unfetched == [{TOPIC_PARTITION: [5, 6], CHANGELOG: [0, 1]}]


def test_records_of_a_partition_paused_since_the_fetch_began_are_put_back() -> None:
    c = _Handling(flow_active=True, active={CHANGELOG})
    records = {TOPIC_PARTITION: [Record(5)], CHANGELOG: [Record(0), Record(1)]}
    asyncio.run(BatchConsumer._handle_fetch(c, records, {CHANGELOG}))  # type: ignore[arg-type]
    assert c.unfetched == [{TOPIC_PARTITION: [5]}]
    assert c.delivered == [(CHANGELOG, 0), (CHANGELOG, 1)] and c.handled == []


def test_records_left_when_the_flow_stops_during_a_delivery_are_put_back() -> None:
    """A revoke stops the flow while a changelog record is being delivered: it and the
    records after it (of its partition and the others) are put back, not marked read."""
    c = _Handling(flow_active=True)

    async def deliver(message: Any) -> None:
        c.delivered.append(message)
        if message == (CHANGELOG, 1):
            c.flow_active = False
            c.suspend_flow.set()

    c.callback = deliver
    other = TP("slawatch-services-changelog", 2)
    records = {CHANGELOG: [Record(0), Record(1), Record(2)], other: [Record(7)]}
    asyncio.run(BatchConsumer._handle_fetch(c, records, None))  # type: ignore[arg-type]
    assert c.delivered == [(CHANGELOG, 0), (CHANGELOG, 1)]
    assert c.unfetched == [{CHANGELOG: [1, 2], other: [7]}]
    assert c._read_offset[CHANGELOG] == 0


class _State:
    def __init__(self, position: int | None) -> None:
        self.position = position
        self.has_valid_position = position is not None


class _AiokafkaConsumer:
    """What ``_rewind`` reads and calls of aiokafka's consumer."""

    def __init__(self, positions: dict[TP, int | None]) -> None:
        states = {tp: _State(p) for tp, p in positions.items()}
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(
            assignment=SimpleNamespace(state_value=states.get)))
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self._subscription.subscription.assignment.state_value.__self__)

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_rewind_puts_a_position_back_only_where_no_seek_moved_it() -> None:
    """Sought back since the fetch (Recovery, the seek to committed): that seek stands;
    still after the records (a batch may end past its last record): put back; no
    position (being reset) or no longer assigned: left alone."""
    moved, kept, past, reset, gone = (TP("t", k) for k in range(5))
    consumer = _AiokafkaConsumer({moved: 0, kept: 12, past: 15, reset: None})
    firsts = {moved: (10, 12), kept: (10, 12), past: (10, 12), reset: (3, 4), gone: (1, 2)}
    assert asyncio.run(batching._rewind(consumer, firsts)) == 2
    assert consumer.seeks == [(kept, 10), (past, 10)]
