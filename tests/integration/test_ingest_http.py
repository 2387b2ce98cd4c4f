"""POST /ingest/events and /ingest/alertmanager on a real worker: events reach the
pipeline, bad bodies are refused with a reason, and both are counted."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATALOG = """
components:
  web-1: {team: apps}
  host-a: {team: servers}
services:
  shop:
    kind: external
    sla: {target: 0.999, period: 30d}
    requires: [web-1, host-a]
"""


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def sample(worker: Any, name: str, **labels: str) -> float:
    for (metric, lbls), value in worker.scrape().items():
        if metric == name and all(dict(lbls).get(k) == v for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"{name}{labels} not exported")


def test_http_ingestion_feeds_the_pipeline_and_refuses_bad_bodies(
    kafka_broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    catalog = tmp_path / "services.yaml"
    catalog.write_text(CATALOG)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=60)
    now = time.time()

    status, body = post(worker.url + "/ingest/events",
                        b'{"component": "web-1", "state": "down", "ts": %f}\n'
                        b'{"component": "web-1", "state": "up", "ts": %f}\n' % (now - 600, now - 300),
                        "application/x-ndjson")
    assert (status, body["accepted"]) == (202, 2)

    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 120))
    alert = {"status": "firing", "labels": {"alertname": "HostDown", "instance": "host-a"},
             "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"}
    status, body = post(worker.url + "/ingest/alertmanager",
                        orjson.dumps({"version": "4", "status": "firing", "alerts": [alert]}))
    assert (status, body["accepted"]) == (202, 1)

    for bad, code in [(b"{not json", 400), (b'{"component": "web-1"}', 400),
                      (b"x" * (4 * 1024 * 1024 + 10), 413)]:
        status, body = post(worker.url + "/ingest/events", bad)
        assert status == code and body["error"], body
    status, body = post(worker.url + "/ingest/alertmanager", b'{"alerts": "nope"}')
    assert status == 400 and "Alertmanager" in body["error"]

    # The events went through the pipeline like any other: shop is down (host-a) and
    # was down for the 300 s of web-1's outage before.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if sample(worker, "slawatch_service_up", service="shop") == 0.0:
                break
        except AssertionError:
            pass
        time.sleep(0.5)
    assert sample(worker, "slawatch_service_up", service="shop") == 0.0
    assert sample(worker, "slawatch_events_total", outcome="accepted") == 3
    assert sample(worker, "slawatch_service_outage_seconds", service="shop") >= 120 - 5
    assert sample(worker, "slawatch_ingest_events_total", endpoint="events") == 2
    assert sample(worker, "slawatch_ingest_events_total", endpoint="alertmanager") == 1
    assert sample(worker, "slawatch_ingest_requests_total", endpoint="events", code="400") == 2
    assert sample(worker, "slawatch_ingest_requests_total", endpoint="events", code="413") == 1
    assert sample(worker, "slawatch_ingest_requests_total", endpoint="alertmanager", code="202") == 1
