"""Stopping the worker halfway through a stream loses nothing and counts nothing twice.

SIGTERM: the worker commits and leaves the group; a new worker continues from the
committed offsets with the tables restored from their changelogs. SIGKILL: nothing is
committed at the kill, Kafka redelivers from the last commit; the trackers recognise
what was already applied, and the per-partition counters record skips what was already
counted. Either way the final numbers equal the engine's for the whole stream, which is
what an uninterrupted run gives (tests/integration/test_worker_pipeline.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kafka import ExampleEstate, publish_messages, wait_counted, wait_matches

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]

#: ``memory`` rebuilds the tables from the changelogs on start; ``rocksdb`` (the
#: production store) reopens them from --data-dir and reads only the changelog's tail.
STORES = pytest.mark.parametrize("store", ["memory", "rocksdb"])


def _stored_on_disk(tmp_path: Path, store: str) -> None:
    if store == "rocksdb":
        assert list((tmp_path / "data-w").rglob("components-*.db")), "no RocksDB tables on disk"


@STORES
def test_sigterm_halfway_then_restart(tmp_path: Path, example_estate: ExampleEstate,
                                      worker_factory: Any, store: str) -> None:
    broker, catalog = example_estate.broker, example_estate.catalog
    messages = example_estate.messages(1200, seed=4)
    half = len(messages) // 2
    publish_messages(broker, messages[:half])
    worker = worker_factory(broker, catalog, extra=["--store", store])
    wait_counted(worker, half)
    assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()

    publish_messages(broker, messages[half:])
    worker.start()
    ready = worker.wait_ready()
    assert ready < 15.0, f"restarted worker ready after {ready:.1f} s"
    wait_counted(worker, len(messages))
    engine, _ = example_estate.reference(messages)
    wait_matches([worker], engine)
    _stored_on_disk(tmp_path, store)


@STORES
def test_sigkill_halfway_then_restart(tmp_path: Path, example_estate: ExampleEstate,
                                      worker_factory: Any, store: str) -> None:
    broker, catalog = example_estate.broker, example_estate.catalog
    messages = example_estate.messages(6000, seed=5)
    publish_messages(broker, messages)
    worker = worker_factory(broker, catalog, extra=["--store", store])
    wait_counted(worker, len(messages) // 3)
    worker.stop(signal.SIGKILL)

    worker.start()
    worker.wait_ready(timeout=40)
    wait_counted(worker, len(messages), timeout=60)
    engine, _ = example_estate.reference(messages)
    samples = wait_matches([worker], engine, timeout=60)
    # Exact counts: nothing counted twice although Kafka redelivered after the kill.
    total = sum(v for k, v in samples.items() if k[0] == "slawatch_events_total")
    assert total == len(messages)
    _stored_on_disk(tmp_path, store)
