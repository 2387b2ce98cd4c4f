"""A fetch that arrives while an assignment's seek (and its hooks) is still running is
processed only once the seek is done.

The hooks read back what a crashed predecessor dead-lettered and decide the routing of
the input; a batch classified before that sent the predecessor's rejections to the DLQ
again (issue 18). The seek sets the expected offsets before it runs the hooks, so the
expected offset being known is not enough.
"""

from __future__ import annotations

import asyncio
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
