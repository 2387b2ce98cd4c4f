"""The consumer hands a handler its partitions together in event time (an
``alignment.Aligner`` registered with the topic), holding back what ran ahead.

Generated here: partitions whose event times advance at different speeds, and fetches
that bring any subset of them, any number of records each, or nothing. What a user
would check: every record is handed on once, in offset order per partition; none waits
more than ``MAX_HOLD`` batches; and while none had to be handed on because it waited
that long, no record handed on is older than one handed on before (stage 2 then never
re-evaluates the past).
"""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.worker import alignment
from agents.worker.batching import MAX_HOLD, BatchConsumer, BatchStats


@dataclass(frozen=True)
class Record:
    offset: int
    ts: float


def _ts(rec: Record) -> float:
    return rec.ts


def _consumer(logs: dict[TP, list[Record]]) -> Any:
    """The state ``_run``, ``_with_carry`` and ``_align`` use, of a consumer past its
    seek; a partition's high water is the end of its log."""
    consumer = SimpleNamespace(
        batch_lock=asyncio.Lock(), batch_stats=BatchStats(),
        _expect=dict.fromkeys(logs, 0), _carry={}, _carry_held={}, _held={}, _aligners={},
        _active=None, _checkpoint_of={},
        app=SimpleNamespace(consumer_generation_id=1), _gather=BatchConsumer._gather)
    consumer._track = lambda *_: None
    consumer._align = functools.partial(BatchConsumer._align, consumer)
    consumer._unread = functools.partial(BatchConsumer._unread, consumer)
    consumer.highwater = lambda tp: len(logs[tp])
    return consumer


class Drain:
    """A drain loop over ``logs``: each round fetches what ``bring(round, tp, position)``
    says (a count of records, 0: the partition is not in the fetch)."""

    def __init__(self, logs: dict[TP, list[Record]], aligned: bool = True) -> None:
        self.logs = logs
        self.consumer = _consumer(logs)
        self.handled: dict[TP, list[Record]] = {tp: [] for tp in logs}
        self.batches: list[list[Record]] = []
        self.offered: dict[tuple[TP, int], int] = {}  # batches a record was in
        self.forced_from: int | None = None  # first batch with a record that waited MAX_HOLD

        async def handler(batch: dict[TP, Any]) -> list[Any]:
            got = []
            for tp, recs in batch.items():
                self.handled[tp].extend(recs)
                got += recs
                if (self.forced_from is None
                        and any(self.offered[tp, r.offset] > MAX_HOLD for r in recs)):
                    self.forced_from = len(self.batches)
            self.batches.append(got)
            return []

        self.handler = handler
        if aligned:
            self.consumer._aligners[handler] = alignment.Aligner(["in"], ts_of=_ts, min_records=1)

    def run(self, bring: Any, rounds: int = 10_000) -> None:
        consumer = self.consumer
        pos = dict.fromkeys(self.logs, 0)

        async def drain() -> None:
            for r in range(rounds):
                records = {}
                for tp, log in self.logs.items():
                    n = min(bring(r, tp, pos[tp]), len(log) - pos[tp])
                    if n > 0:
                        records[tp] = log[pos[tp]:pos[tp] + n]
                        pos[tp] += n
                consumer._held = {}
                records = BatchConsumer._with_carry(consumer, records, None)
                batch = {tp: recs for tp, recs in records.items() if recs}
                for tp, recs in batch.items():
                    for rec in recs:
                        key = (tp, rec.offset)
                        self.offered[key] = self.offered.get(key, 0) + 1
                calls = len(self.batches)
                if batch:
                    await BatchConsumer._run(consumer, self.handler, batch, 1)
                if len(self.batches) == calls:  # all of it held (or nothing fetched)
                    self.batches.append([])
                if all(p == len(log) for p, log in zip(pos.values(), self.logs.values(),
                                                       strict=True)) and not consumer._carry:
                    return
            raise AssertionError("the drain did not finish")

        asyncio.run(drain())

    def in_time_order_until_forced(self) -> bool:
        hi = -1.0
        for k, got in enumerate(self.batches):
            if self.forced_from is not None and k >= self.forced_from:
                break
            if got and min(r.ts for r in got) < hi:
                return False
            hi = max([hi, *(r.ts for r in got)])
        return True


def _logs(speeds: list[float], count: int, seed: int) -> dict[TP, list[Record]]:
    rnd = random.Random(seed)
    logs = {}
    for p, speed in enumerate(speeds):
        t = rnd.random()
        recs = []
        for o in range(count):
            t += speed * (0.5 + rnd.random())
            recs.append(Record(o, t))
        logs[TP("in", p)] = recs
    return logs


@settings(max_examples=120, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=1, max_size=5), st.integers(1, 80),
       st.integers(0, 2**32), st.floats(0.0, 1.0), st.integers(1, 30))
def test_records_go_on_once_in_order_and_in_event_time(
        speeds: list[float], count: int, seed: int, presence: float, most: int) -> None:
    logs = _logs(speeds, count, seed)
    rnd = random.Random(seed + 1)

    def bring(r: int, tp: TP, pos: int) -> int:  # every partition comes in the end
        return rnd.randint(1, most) if rnd.random() < presence or r >= 40 else 0

    drain = Drain(logs)
    drain.run(bring)
    for tp, log in logs.items():
        assert drain.handled[tp] == log
        assert drain.consumer._expect[tp] == len(log)
    assert max(drain.offered.values()) <= MAX_HOLD + 1
    assert drain.in_time_order_until_forced()


def test_partitions_a_first_fetch_did_not_bring_are_waited_for() -> None:
    """As measured on the sweep's storms: the first fetch brings 5 of 8 partitions, half
    of each; the next brings the other 3 and more of the 5."""
    logs = _logs([1.0] * 8, 100, 7)
    first = {TP("in", p) for p in range(5)}

    def bring(r: int, tp: TP, pos: int) -> int:
        return 0 if r == 0 and tp not in first else 50

    drain = Drain(logs)
    drain.run(bring)
    assert drain.forced_from is None
    assert drain.in_time_order_until_forced()
    assert drain.batches[0] == []  # the first fetch waited whole (no handler call)
    stats = drain.consumer.batch_stats
    assert stats.held > 0
    # The benchmark's rate counts from the first fetch, as the raw baseline does, not
    # from the first batch handled (after the held fetch) nor from its end.
    assert 0 < stats.fetched_at <= stats.begun_at <= stats.first_at <= stats.last_at
    unaligned = Drain(logs, aligned=False)  # what the test would see without it
    unaligned.run(bring)
    assert not unaligned.in_time_order_until_forced()


def test_a_partition_that_stays_away_delays_the_others_by_max_hold_batches() -> None:
    logs = _logs([1.0, 1.0], 60, 3)
    away = TP("in", 1)

    def bring(r: int, tp: TP, pos: int) -> int:
        return 0 if tp == away and r < 20 else 10

    drain = Drain(logs)
    drain.run(bring)
    assert drain.handled[TP("in", 0)] == logs[TP("in", 0)]
    assert max(drain.offered.values()) == MAX_HOLD + 1
    assert drain.forced_from is not None
    # the first records went on after MAX_HOLD batches of waiting
    first = [k for k, got in enumerate(drain.batches) if got]
    assert first and first[0] == MAX_HOLD


def test_live_traffic_is_not_held() -> None:
    """Fetches below ``alignment.MIN_RECORDS`` go on whole, whatever the drift."""
    logs = _logs([1.0, 50.0], 40, 5)
    drain = Drain(logs)
    drain.consumer._aligners[drain.handler] = alignment.Aligner(["in"], ts_of=_ts)
    drain.run(lambda r, tp, pos: 10)
    assert drain.consumer.batch_stats.held == 0
    assert max(drain.offered.values()) == 1
