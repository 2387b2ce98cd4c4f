"""The real worker on a real broker: numbers equal the engine's, bad input to the DLQ.

One worker process, messages published with kafka-python *before* it starts (so the
start-up time to the first counted message is measured too), a messy stream (out of
order, duplicates, late, invalid, unmapped, a producer that partitions wrongly), then
catalog reloads: a broken catalog is refused and counted, a good one is applied.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from agents.clients.broker import EmbeddedBroker
from agents.worker.partitioning import Partitioner
from agents.worker.pipeline import H_OFFSET, H_PARTITION, H_REASON, H_TOPIC
from tests.exact_reference import dlq_multiset, read_to_end
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    Message,
    event_bytes,
    publish_messages,
    reference_engine,
    scenario,
    wait_counted,
    wait_matches,
)

pytestmark = pytest.mark.integration

COMPONENTS = ["mail-srv-01", "mail-srv-02", "core-sw-1", "dns-1", "dns-2", "mx-1", "mx-2",
              "spare-1"]


def _wrongly_partitioned(now: float) -> list[Message]:
    """mx-3's events sent by a producer with another partitioner: all on a wrong partition."""
    right = Partitioner(4)("mx-3")
    wrong = (right + 1) % 4
    return [
        (b"mx-3", event_bytes("mx-3", "down", now - 5000.0), wrong),
        (b"mx-3", event_bytes("mx-3", "up", now - 4000.0), wrong),
        (b"mx-3", event_bytes("mx-3", "down", now - 1500.0), wrong),
    ]


def _wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_matches_engine_dlq_and_reload(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    now = time.time()
    messages = scenario(COMPONENTS, 600, seed=4, now=now) + _wrongly_partitioned(now)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    engine, _ = reference_engine(EXAMPLE_CATALOG, messages)
    assert engine.counts["invalid"] and engine.counts["late"] and engine.counts["duplicate"]
    assert engine.counts["unmapped"]
    publish_messages(kafka_broker, messages)

    worker = worker_factory(kafka_broker, catalog)
    first = wait_counted(worker, 1, timeout=30)
    assert first < 15.0, f"first message counted {first:.1f} s after start (limit 15 s)"
    wait_counted(worker, len(messages), timeout=30)
    wait_matches([worker], engine)

    # Invalid and late messages are in the DLQ with their reason and origin, each once
    # (read to the topic's end).
    dlq = read_to_end(kafka_broker.bootstrap, "component-events-dlq")
    for rec in dlq:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers[H_REASON]
        assert headers[H_TOPIC] == "component-events"
        assert int(headers[H_PARTITION]) in range(4)
        assert int(headers[H_OFFSET]) >= 0
    assert dlq_multiset(dlq) == engine.dlq
    originals = {v for _, v, _ in messages}
    assert all(rec.value in originals for rec in dlq)
    assert worker.alive()

    # The JSON API agrees with the metrics.
    status, body = worker.get("/api/services/email/outages")
    assert status == 200, body
    import orjson

    outages = orjson.loads(body)["outages"]
    assert [o["start"] for o in outages] == [
        o.start for o in engine.outages("email", time.time())
    ]

    # A broken catalog is refused (file change, then SIGHUP); the old one stays in force.
    def reload_errors() -> float:
        return worker.scrape()[("slawatch_catalog_reload_errors_total", frozenset())]

    catalog.write_text(EXAMPLE_CATALOG.replace("target: 0.999,", "target: 1.5,"))
    _wait_for(lambda: reload_errors() == 1.0, 15, "the file change to be refused")
    os.kill(worker.pid, signal.SIGHUP)
    _wait_for(lambda: reload_errors() == 2.0, 15, "the SIGHUP reload to be refused")
    wait_matches([worker], engine, timeout=5)

    # A good catalog is applied without a restart.
    catalog.write_text(EXAMPLE_CATALOG.replace("target: 0.999,", "target: 0.995,"))
    key = ("slawatch_service_sla_target_ratio",
           frozenset({("service", "email"), ("kind", "external")}))
    _wait_for(lambda: worker.scrape().get(key) == 0.995, 15, "the new catalog")
    assert worker.alive()


def test_live_segments_are_applied_from_their_send(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    """Events published a few at a time to a ready worker: its stage 2 applies their
    segments when the broker acknowledges them, not a fetch later
    (``BatchConsumer.apply_own``), and the numbers are the engine's."""
    import orjson

    messages = scenario(COMPONENTS, 150, seed=9, now=time.time())
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    engine, _ = reference_engine(EXAMPLE_CATALOG, messages)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=40)
    for i in range(0, len(messages), 10):
        chunk = messages[i:i + 10]
        publish_messages(kafka_broker, chunk)
        wait_counted(worker, i + len(chunk), timeout=30)
    wait_matches([worker], engine)
    status, body = worker.get("/api/worker")
    assert status == 200, body
    stats = orjson.loads(body)["stats"]
    assert stats["own"] > 0, stats
