"""Records a handler holds back go first in their partition's next batch, exactly once.

``BatchConsumer._run`` keeps what a handler left of a partition's list (``_carry``) and
the drain loop puts it before that partition's next fetched records
(``_with_carry``) instead of seeking back and fetching them again. Generated here:
partitions, fetches cut into pieces and the prefixes a handler keeps. What a user would
check: every record is handed to the handler once, in offset order per partition, and a
seek (the end of a rebalance) forgets what was held (it is fetched again from the
committed offset, so keeping it would hand it over twice).
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

from agents.worker.batching import BatchConsumer, BatchStats


@dataclass(frozen=True)
class Record:
    offset: int


def _consumer(tps: list[TP]) -> Any:
    """The state ``_run`` and ``_with_carry`` use, of a consumer past its seek."""
    consumer = SimpleNamespace(
        batch_lock=asyncio.Lock(), batch_stats=BatchStats(),
        _expect=dict.fromkeys(tps, 0), _carry={}, _carry_held={}, _held={}, _aligners={},
        _checkpoint_of={},
        app=SimpleNamespace(consumer_generation_id=1), _gather=BatchConsumer._gather)
    consumer._track = lambda *_: None
    return consumer


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[TP, list[list[int]]], list[float]]:
    """Per partition, its records cut into fetches; and the fractions a handler keeps."""
    n = draw(st.integers(1, 4))
    fetched = {}
    for p in range(n):
        total = draw(st.integers(1, 60))
        cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=5))) if total > 1 else []
        bounds = [0, *cuts, total]
        fetched[TP("in", p)] = [list(range(a, b)) for a, b in itertools.pairwise(bounds)]
    keeps = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
    return fetched, keeps


@settings(max_examples=150, deadline=None)
@given(runs())
def test_every_record_is_handled_once_in_order(run: tuple[dict[TP, list[list[int]]],
                                                          list[float]]) -> None:
    fetches, keeps = run
    consumer = _consumer(list(fetches))
    handled: dict[TP, list[int]] = {tp: [] for tp in fetches}
    calls = [0]
    offered = [0]

    async def handler(batch: dict[TP, Any]) -> list[Any]:
        for tp, recs in batch.items():
            offered[0] += len(recs)
            # keep a non-empty prefix, as the pipeline's alignment does
            keep = keeps[calls[0] % len(keeps)]
            calls[0] += 1
            n = max(1, int(len(recs) * keep))
            batch[tp] = recs[:n]
            handled[tp].extend(r.offset for r in recs[:n])
        return []

    async def drain() -> None:
        pending = {tp: list(parts) for tp, parts in fetches.items()}
        while any(pending.values()) or consumer._carry:
            # one fetch: the next piece of every partition that has one left
            records = {tp: [Record(o) for o in parts.pop(0)]
                       for tp, parts in pending.items() if parts}
            records = BatchConsumer._with_carry(consumer, records, None)
            batch = {tp: recs for tp, recs in records.items() if recs}
            await BatchConsumer._run(consumer, handler, batch, 1)

    asyncio.run(drain())
    for tp, parts in fetches.items():
        assert handled[tp] == [o for part in parts for o in part]
        assert consumer._expect[tp] == len(handled[tp])
    done = sum(len(h) for h in handled.values())
    assert consumer.batch_stats.records == done
    assert consumer.batch_stats.held == offered[0] - done


def test_held_records_go_first_and_are_not_fetched_again() -> None:
    tp = TP("in", 0)
    consumer = _consumer([tp])

    async def keep_two(batch: dict[TP, Any]) -> list[Any]:
        batch[tp] = batch[tp][:2]
        return []

    asyncio.run(BatchConsumer._run(consumer, keep_two, {tp: [Record(o) for o in range(5)]}, 1))
    assert consumer._expect[tp] == 2
    assert [r.offset for r in consumer._carry[tp]] == [2, 3, 4]
    assert consumer.batch_stats.held == 3
    merged = BatchConsumer._with_carry(consumer, {tp: [Record(5), Record(6)]}, None)
    assert [r.offset for r in merged[tp]] == [2, 3, 4, 5, 6]
    assert not consumer._carry
    # nothing fetched for the partition: the held records are handed on alone
    consumer._carry[tp] = [Record(7)]
    assert [r.offset for r in BatchConsumer._with_carry(consumer, {}, None)[tp]] == [7]


def test_a_paused_partition_keeps_its_held_records() -> None:
    tp, other = TP("in", 0), TP("in", 1)
    consumer = _consumer([tp, other])
    consumer._carry[tp] = [Record(3)]
    merged = BatchConsumer._with_carry(consumer, {other: [Record(0)]}, {other})
    assert tp not in merged and [r.offset for r in consumer._carry[tp]] == [3]


def test_records_fetched_again_after_held_ones_are_not_handed_twice() -> None:
    tp = TP("in", 0)
    consumer = _consumer([tp])
    consumer._carry[tp] = [Record(3), Record(4)]
    merged = BatchConsumer._with_carry(consumer, {tp: [Record(4), Record(5)]}, None)
    assert [r.offset for r in merged[tp]] == [3, 4, 5]


def test_a_rebalance_during_the_handler_keeps_nothing() -> None:
    """The seek to committed that ends the rebalance fetches them again."""
    tp = TP("in", 0)
    consumer = _consumer([tp])

    async def rebalanced(batch: dict[TP, Any]) -> list[Any]:
        batch[tp] = batch[tp][:1]
        consumer.app.consumer_generation_id = 2
        return []

    asyncio.run(BatchConsumer._run(consumer, rebalanced, {tp: [Record(0), Record(1)]}, 1))
    assert not consumer._carry


def test_a_seek_forgets_held_records() -> None:
    tp = TP("in", 0)
    consumer = _consumer([tp])
    consumer._carry[tp] = [Record(3)]
    consumer._done, consumer._inflight, consumer._gap_at = {}, {}, {}
    BatchConsumer._forget(consumer, tp)
    assert not consumer._carry
