"""A backlog whose partitions run at different speeds in event time.

A fetch brings about as many records of every partition; here partition 3's component
changes every 8 s, partition 0's every 4 s and partition 2's every second, so per
record partition 3 covers eight times the event time of partition 2. Stage 1 holds back
what runs ahead (agents/worker/alignment.py) for a later batch: the numbers
must still be exactly the engine's, every message counted once, and records must
really have been held back (or this test would prove nothing about it).
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.clients.broker import EmbeddedBroker
from agents.worker.partitioning import Partitioner
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    EXAMPLE_COMPONENTS,
    Message,
    counted,
    event_bytes,
    publish_messages,
    reference_engine,
    union_scrape,
    wait_counted,
    wait_matches,
)

pytestmark = pytest.mark.integration

#: Seconds between events of a component, by its partition (murmur2 over 4 partitions).
INTERVAL = {0: 4.0, 2: 1.0, 3: 8.0}
SPAN = 8000.0


def backlog(now: float, seed: int) -> list[Message]:
    rnd = random.Random(seed)
    part = Partitioner(4)
    comps = EXAMPLE_COMPONENTS
    events: list[tuple[float, str, str]] = []
    start = now - 60 - SPAN
    for comp in comps:
        step = INTERVAL[part(comp)]
        t = start + rnd.random() * step
        while t < now - 60:
            events.append((t, comp, "down" if rnd.random() < 0.3 else "up"))
            t += step
    events.sort()
    return [(c.encode(), event_bytes(c, s, t), None) for t, c, s in events]


def test_partitions_ahead_in_event_time_are_held_back_and_nothing_is_lost(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    messages = backlog(time.time(), seed=8)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    engine, reasons = reference_engine(EXAMPLE_CATALOG, messages)
    assert not reasons and engine.counts["accepted"] + engine.counts["unmapped"] == len(messages)
    publish_messages(kafka_broker, messages)

    # Fetches of at most 256 KiB a partition (~2,500 records): the backlog takes several
    # fetches whatever the worker's speed (with the default 8 MiB one fetch can hold it
    # all, and then no partition is ahead of another).
    worker = worker_factory(kafka_broker, catalog,
                            env={"SLAWATCH_FAUST_SETTINGS": '{"consumer_max_fetch_size": 262144}'})
    wait_counted(worker, len(messages), timeout=60)
    wait_matches([worker], engine)
    status, body = worker.get("/api/worker")
    assert status == 200
    stats = orjson.loads(body)["stats"]
    assert stats["held"] > 0, stats
    assert worker.alive()


@pytest.mark.slow
def test_held_back_records_are_counted_once_when_a_worker_joins(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    """A rebalance lands while the first worker keeps held-back records in memory
    (``BatchConsumer._carry``: neither processed nor committed). They are fetched again
    from the committed offset by whichever worker owns the partition then: every
    message must still be counted exactly once, and the numbers be the engine's. (The
    seek that ends the rebalance forgets them; a held record handed on anyway is judged
    against the expected offset like any fetched one, so this also holds if it did
    not.) The first worker pauses at every batch, so the second joins while the
    backlog is being worked off."""
    messages = backlog(time.time(), seed=9)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    engine, reasons = reference_engine(EXAMPLE_CATALOG, messages)
    assert not reasons
    publish_messages(kafka_broker, messages)
    env = {"SLAWATCH_FAUST_SETTINGS": '{"consumer_max_fetch_size": 262144}'}
    a = worker_factory(kafka_broker, catalog, name="a", env=env, crash_at="fetch~1.0")

    def stats(w: Any) -> dict[str, Any]:
        status, body = w.get("/api/worker")
        assert status == 200
        return dict(orjson.loads(body)["stats"])

    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError, AssertionError, ValueError):
            if stats(a)["held"] > 0:
                break
        assert time.monotonic() < deadline, f"worker a held nothing back:\n{a.log_tail()}"
        time.sleep(0.2)
    assert counted(union_scrape([a])[0]) < len(messages), "the backlog was done before the join"
    b = worker_factory(kafka_broker, catalog, name="b", env=env)
    deadline = time.monotonic() + 120
    while counted(union_scrape([a, b])[0]) < len(messages):
        assert time.monotonic() < deadline, (
            f"{counted(union_scrape([a, b])[0])} of {len(messages)} counted:\n{a.log_tail()}")
        time.sleep(0.5)
    wait_matches([a, b], engine)
    assert counted(union_scrape([a, b])[0]) == len(messages)
    assert stats(b)["records"] > 0, "the second worker never took over a partition"
    assert a.alive() and b.alive()
