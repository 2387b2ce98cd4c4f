"""``--segments-format``: what stage 1 writes to the service segments topic.

Releases up to 0.1.0 read one segments message per service, keyed by the service's
name (``segwire.encode``); later ones write one message per segments partition holding
many services (``segwire.encode_many``) and read both. During a rolling upgrade the
upgraded workers run with ``single`` so that the old ones still read what they write.
With either format the numbers must be the reference engine's, and with ``single``
every record on the topic must be in the form a 0.1.0 worker reads.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agents.clients.broker import EmbeddedBroker
from agents.settings import SEGMENTS_SUFFIX
from agents.worker import segwire
from agents.worker.partitioning import Partitioner
from streams.catalog import load_catalog
from tests.exact_reference import read_to_end
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    publish_messages,
    reference_engine,
    scenario,
    wait_counted,
    wait_matches,
)

pytestmark = pytest.mark.integration

COMPONENTS = ["mail-srv-01", "mail-srv-02", "core-sw-1", "dns-1", "dns-2", "mx-1", "mx-2"]
PARTITIONS = 4


@pytest.mark.parametrize("form", ["single", "many"])
def test_segments_format(form: str, kafka_broker: EmbeddedBroker, worker_factory: Any,
                         tmp_path: Path) -> None:
    now = time.time()
    messages = scenario(COMPONENTS, 300, seed=11, now=now)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    engine, _ = reference_engine(EXAMPLE_CATALOG, messages)
    publish_messages(kafka_broker, messages)
    app_id = f"segfmt-{form}"
    worker = worker_factory(kafka_broker, catalog, app_id=app_id, partitions=PARTITIONS,
                            env={"SLAWATCH_SEGMENTS_FORMAT": form})
    wait_counted(worker, len(messages), timeout=60)
    wait_matches([worker], engine)

    records = read_to_end(kafka_broker.bootstrap, app_id + SEGMENTS_SUFFIX)
    assert records, "no segments were written"
    services = set(load_catalog(catalog).services)
    partition_of = Partitioner(PARTITIONS)
    for rec in records:
        if form == "single":
            # What a 0.1.0 worker reads: the service's name as key, on its partition,
            # and a one-service message.
            assert rec.key is not None and rec.key.decode() in services, rec.key
            assert rec.partition == partition_of(rec.key.decode())
            assert rec.value.startswith(segwire.MAGIC)
            assert segwire.decode(rec.value)
        else:
            assert rec.value.startswith(segwire.MAGIC_MANY)
            names = [name for name, _ in segwire.decode_many(rec.value)]
            assert names and all(partition_of(n) == rec.partition for n in names)
    assert worker.alive()
