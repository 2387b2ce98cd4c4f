"""Catalog faults while the worker runs: invalid, deleted, a service removed, then valid.

The reload path (agents/worker/reload.py): the file is polled every 2 s (content
hash) and reloaded on SIGHUP. A refused catalog leaves the previous one in force, is
logged ("refused, the previous catalog stays in force") and counted in
``slawatch_catalog_reload_errors_total``; the numbers do not move. A valid catalog is
applied without a restart.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.clients.broker import EmbeddedBroker
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    EXAMPLE_COMPONENTS,
    WorkerProcess,
    publish_messages,
    reference_engine,
    scenario,
    wait_counted,
)
from tests.reliability_helpers import service_names, wait_equal, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = EXAMPLE_COMPONENTS
REFUSED = "refused, the previous catalog stays in force"


def _without(service: str) -> str:
    """EXAMPLE_CATALOG without ``service``."""
    catalog = yaml.safe_load(EXAMPLE_CATALOG)
    del catalog["services"][service]
    return str(yaml.safe_dump(catalog, sort_keys=False))


#: Without the `dns` service that `email` requires: a dangling reference.
WITHOUT_DNS = _without("dns")
#: Without `email` (nothing depends on it): a valid catalog.
WITHOUT_EMAIL = _without("email")


def _errors(worker: WorkerProcess) -> float:
    return worker.scrape()[("slawatch_catalog_reload_errors_total", frozenset())]


def _reloads(worker: WorkerProcess) -> float:
    return worker.scrape()[("slawatch_catalog_reloads_total", frozenset())]


def _log_count(worker: WorkerProcess, text: str) -> int:
    return worker.log_path.read_text(errors="replace").count(text)


def _started(kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
             ) -> tuple[WorkerProcess, Path, Any]:
    assert "service: dns" in WITHOUT_DNS and "  dns:" not in WITHOUT_DNS
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    messages = scenario(COMPONENTS, 400, seed=8, now=time.time(), jitter=0.0)
    engine, _ = reference_engine(EXAMPLE_CATALOG, messages)
    publish_messages(kafka_broker, messages)
    worker = worker_factory(kafka_broker, catalog)
    wait_counted(worker, len(messages), timeout=60)
    wait_equal([worker], engine)
    return worker, catalog, engine


def test_bad_catalogs_are_refused_and_a_good_one_applied(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    worker, catalog, engine = _started(kafka_broker, worker_factory, tmp_path)
    assert _errors(worker) == 0

    # 1. Not YAML at all (the file watcher notices the change).
    catalog.write_text("services: [unterminated\n  - {")
    wait_for(lambda: _errors(worker) == 1, 15, "the invalid YAML to be refused")
    assert _log_count(worker, REFUSED) == 1
    wait_equal([worker], engine, timeout=10)

    # 2. Valid YAML, invalid catalog: `email` requires a service that is gone.
    catalog.write_text(WITHOUT_DNS)
    wait_for(lambda: _errors(worker) == 2, 15, "the catalog without dns to be refused")
    log = worker.log_path.read_text(errors="replace")
    reason = "\n".join(log.split(REFUSED)[-1].splitlines()[:3])
    assert "service 'email'" in reason and "unknown service 'dns'" in reason, reason
    wait_equal([worker], engine, timeout=10)

    # 3. Deleted: a SIGHUP reload cannot read it; the last good catalog stays in force.
    catalog.unlink()
    os.kill(worker.pid, signal.SIGHUP)
    wait_for(lambda: _errors(worker) == 3, 15, "the SIGHUP reload of a deleted file to be refused")
    assert _log_count(worker, REFUSED) == 3
    wait_equal([worker], engine, timeout=10)
    assert worker.alive()

    # 4. A valid catalog that drops a service is applied: its series go away.
    reloads = _reloads(worker)
    catalog.write_text(WITHOUT_EMAIL)
    wait_for(lambda: _reloads(worker) == reloads + 1, 15, "the catalog without email")
    wait_for(lambda: service_names(worker.scrape()) == {"dns"}, 10, "email's series to go")
    assert _errors(worker) == 3

    # 5. The full catalog again, with a new target: picked up without a restart.
    catalog.write_text(EXAMPLE_CATALOG.replace("target: 0.999,", "target: 0.995,"))
    key = ("slawatch_service_sla_target_ratio",
           frozenset({("service", "email"), ("kind", "external")}))
    wait_for(lambda: worker.scrape().get(key) == 0.995, 15, "the new catalog")
    assert service_names(worker.scrape()) == {"dns", "email"}
    assert worker.alive() and worker.starts == 1


def test_deleted_catalog_is_reported_without_sighup(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=40)
    catalog.unlink()
    # The poll interval is 2 s: 8 s is four polls.
    wait_for(lambda: _errors(worker) >= 1, 8, "the deleted catalog to be reported")
    assert _log_count(worker, "stays in force") >= 1
