"""A rejected message larger than the worker's producer may send goes to the DLQ as its
head, with header ``slawatch-truncated`` = the original size and the source headers
pointing at the original (README, Reliability), and the worker goes on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from agents.clients.broker import EmbeddedBroker
from agents.worker.pipeline import DLQ_HEADROOM, H_OFFSET, H_REASON, H_TOPIC, H_TRUNCATED
from tests.exact_reference import read_to_end
from tests.fixtures_kafka import EXAMPLE_CATALOG, WorkerProcess, event_bytes, wait_counted

pytestmark = [pytest.mark.integration]

#: Faust's producer_max_request_size default, the worker's default.
MAX_REQUEST = 1_000_000


def test_oversized_rejection_keeps_its_head(tmp_path: Path) -> None:
    from confluent_kafka import Producer

    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    big = os.urandom(1_500_000)  # not JSON: invalid
    ok = event_bytes("dns-1", "down", time.time() - 5)
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    worker = WorkerProcess(broker, catalog, tmp_path)
    try:
        broker.create_topics({"component-events": 4})
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4_000_000})
        for value in (big, ok):
            producer.produce("component-events", key=b"dns-1", value=value)
        assert producer.flush(30) == 0
        worker.start()
        wait_counted(worker, 2, timeout=60)
        dlq = read_to_end(broker.bootstrap, "component-events-dlq")
        assert len(dlq) == 1
        rec = dlq[0]
        headers = {k: bytes(v).decode() for k, v in rec.headers}
        assert headers[H_REASON].startswith("invalid")
        assert int(headers[H_TRUNCATED]) == len(big) + len(b"dns-1")
        assert headers[H_TOPIC] == "component-events" and int(headers[H_OFFSET]) == 0
        assert 0 < len(rec.value) <= MAX_REQUEST - DLQ_HEADROOM and big.startswith(rec.value)
        samples = worker.scrape()
        got = {dict(k[1])["outcome"]: v for k, v in samples.items()
               if k[0] == "slawatch_events_total" and v}
        assert got == {"invalid": 1.0, "accepted": 1.0}, orjson.dumps(got)
        assert worker.alive()
    finally:
        worker.stop(timeout=10)
        broker.stop()
