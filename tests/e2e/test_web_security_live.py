"""A real Prometheus scrapes a worker over TLS with basic auth, and a real Alertmanager
posts to its ingest endpoint with a bearer token file (CONTRACT §8).

One worker behind ``--web-config-file`` (TLS from a throwaway CA, a bcrypt user) with
``--ingest --ingest-token-file``. Debian's ``prometheus`` scrapes it with
``scheme: https``, ``basic_auth.password_file`` and ``tls_config.ca_file``, unchanged
from what any exporter-toolkit exporter needs; a second job with a wrong password must
be refused. Debian's Alertmanager gets HostDown and DiskFull for ``mail-srv-01`` through
its API, and its webhook (``http_config.authorization.credentials_file``,
``tls_config.ca_file``) feeds the worker: with DiskFull resolved the component stays
down while HostDown fires, also across a worker restart, and comes up when HostDown is
resolved. And a hostile service name on the status page, in a real Chromium.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.clients.broker import EmbeddedBroker, free_port
from tests.e2e.test_deploy_prometheus_live import Proc, wait_for
from tests.fixtures_kafka import EXAMPLE_CATALOG, WorkerProcess, start_broker
from tests.integration.test_web_security import PASSWORD, TOKEN, basic_header
from tests.support.tls import bcrypt_hash, make_tls
from tests.support.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def http_json(url: str, data: Any = None) -> Any:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def component_up(worker: WorkerProcess, component: str) -> float | None:
    for (name, labels), value in worker.scrape().items():
        if name == "slawatch_component_up" and dict(labels).get("component") == component:
            return value
    return None


def test_prometheus_and_alertmanager_talk_to_a_secured_worker(tmp_path: Path) -> None:
    prometheus = require_tool("prometheus", "prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or require_tool(
        "alertmanager", "prometheus-alertmanager")
    tls = make_tls(tmp_path / "tls")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{cert_file: {tls.cert}, key_file: {tls.key}}}\n"
                   f"basic_auth_users: {{prometheus: '{bcrypt_hash(PASSWORD)}'}}\n")
    token_file = tmp_path / "ingest.token"
    token_file.write_text(TOKEN + "\n")
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    procs: list[Proc] = []
    broker = start_broker(tmp_path, 4)
    worker = WorkerProcess(broker, catalog, tmp_path, extra=[
        "--web-config-file", str(web), "--ingest", "--ingest-token-file", str(token_file),
        "--alertmanager-alertnames", "HostDown,DiskFull",
    ])
    worker.scheme = "https"
    worker.ssl_context = ssl.create_default_context(cafile=str(tls.ca))
    worker.auth_headers = {"Authorization": basic_header("prometheus", PASSWORD)}
    logs = [worker.log_path]
    try:
        worker.start()
        worker.wait_ready(timeout=90)

        # -- Prometheus: https + basic_auth.password_file + tls_config.ca_file ---------------
        (tmp_path / "prom.pw").write_text(PASSWORD)
        (tmp_path / "wrong.pw").write_text("not the password")
        target = {"targets": [f"127.0.0.1:{worker.port}"]}

        def job(name: str, password_file: str) -> dict[str, Any]:
            return {"job_name": name, "scheme": "https", "static_configs": [target],
                    "basic_auth": {"username": "prometheus",
                                   "password_file": str(tmp_path / password_file)},
                    "tls_config": {"ca_file": str(tls.ca)}}

        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [job("slawatch", "prom.pw"), job("intruder", "wrong.pw")],
        }))
        prom_port = free_port()
        procs.append(Proc("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log").start())
        logs.append(tmp_path / "prometheus.log")

        def query(promql: str) -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            result: list[dict[str, Any]] = http_json(url)["data"]["result"]
            return result

        wait_for("Prometheus to scrape slawatch over TLS with basic auth",
                 lambda: query('slawatch_service_info{job="slawatch"}'), 60, logs)
        wait_for("both jobs scraped once", lambda: len(query("up")) == 2, 30, logs)
        ups = {r["metric"]["job"]: r["value"][1] for r in query("up")}
        assert ups == {"slawatch": "1", "intruder": "0"}, ups
        assert not query('slawatch_service_info{job="intruder"}')

        # -- Alertmanager: webhook with authorization.credentials_file and tls_config ---------
        am_config = tmp_path / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump({
            "route": {"receiver": "slawatch", "group_by": ["instance"], "group_wait": "0s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "slawatch", "webhook_configs": [{
                "url": f"https://127.0.0.1:{worker.port}/ingest/alertmanager",
                "send_resolved": True,
                "http_config": {"authorization": {"credentials_file": str(token_file)},
                                "tls_config": {"ca_file": str(tls.ca)}},
            }]}],
        }))
        am_port = free_port()
        procs.append(Proc("alertmanager", [
            alertmanager, f"--config.file={am_config}", f"--storage.path={tmp_path / 'am'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            tmp_path / "alertmanager.log").start())
        logs.append(tmp_path / "alertmanager.log")
        am = f"http://127.0.0.1:{am_port}"
        wait_for("Alertmanager ready", lambda: urllib.request.urlopen(f"{am}/-/ready", timeout=5),
                 30, logs)

        def rfc3339(ts: float) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

        started = time.time() - 120

        def alert(name: str, resolved: bool) -> dict[str, Any]:
            ends = time.time() - 1 if resolved else time.time() + 3600
            return {"labels": {"alertname": name, "instance": "mail-srv-01"},
                    "startsAt": rfc3339(started), "endsAt": rfc3339(ends)}

        http_json(f"{am}/api/v2/alerts", [alert("HostDown", False), alert("DiskFull", False),
                                          alert("NotAComponentAlert", False)])
        wait_for("mail-srv-01 down through Alertmanager",
                 lambda: component_up(worker, "mail-srv-01") == 0.0, 60, logs)

        def ingested() -> float:  # alerts published by ingest (counted per process)
            return sum(v for (n, lbl), v in worker.scrape().items()
                       if n == "slawatch_ingest_events_total" and dict(lbl).get("endpoint") == "alertmanager")

        # Straight to the endpoint, as Alertmanager would, one alert per request: what the
        # worker remembers is all there is to go by.
        def post(name: str, status: str) -> None:
            body = {"version": "4", "status": status, "alerts": [{
                "status": status, "labels": {"alertname": name, "instance": "mx-1"},
                "startsAt": rfc3339(started), "endsAt": rfc3339(time.time() - 1),
                "fingerprint": f"fp-{name}"}]}
            req = urllib.request.Request(
                f"{worker.url}/ingest/alertmanager", data=json.dumps(body).encode(), method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=10, context=worker.ssl_context) as resp:
                assert resp.status == 202

        post("HostDown", "firing")
        post("DiskFull", "firing")
        wait_for("mx-1 down", lambda: component_up(worker, "mx-1") == 0.0, 60, logs)

        # The firing sets are a table: they survive a restart.
        worker.stop()
        worker.start()
        worker.wait_ready(timeout=90)
        post("DiskFull", "resolved")
        before = ingested()
        http_json(f"{am}/api/v2/alerts", [alert("DiskFull", True)])
        wait_for("the resolved DiskFull delivered", lambda: ingested() > before, 60, logs)
        time.sleep(3)  # the alerts agent has had time to act on both
        assert component_up(worker, "mail-srv-01") == 0.0, "up while HostDown still fires"
        assert component_up(worker, "mx-1") == 0.0, "up while HostDown still fires"

        http_json(f"{am}/api/v2/alerts", [alert("HostDown", True)])
        post("HostDown", "resolved")
        wait_for("mail-srv-01 and mx-1 up once HostDown is resolved",
                 lambda: component_up(worker, "mail-srv-01") == component_up(worker, "mx-1") == 1.0,
                 60, logs)
        log = worker.log_path.read_text(errors="replace")
        assert TOKEN not in log and PASSWORD not in log
        assert "ingest alertmanager from 127.0.0.1" in log
    finally:
        for proc in procs:
            proc.stop()
        worker.stop()
        broker.stop()


HOSTILE_CATALOG = """
components:
  db-1: {team: "<script>document.title='pwned-team'</script>"}
services:
  "<img src=x onerror=\\"document.title='pwned'\\">":
    kind: external
    customers: ["<script>document.title='pwned-customer'</script>"]
    sla: {target: 0.99, period: 30d}
    requires: [db-1]
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_hostile_service_name_is_inert_on_the_status_page(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    from tests.e2e.test_statuspage import browse
    from tests.fixtures_kafka import event_bytes, publish_messages

    catalog = tmp_path / "services.yaml"
    catalog.write_text(HOSTILE_CATALOG)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=60)
    publish_messages(kafka_broker, [(b"db-1", event_bytes("db-1", "down", time.time() - 600), None)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = worker.get("/api/services")
        if status == 200 and b'"down"' in body:
            break
        time.sleep(0.5)
    with urllib.request.urlopen(worker.url + "/", timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'sha256-" in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    result = browse(worker.url + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "<title>slawatch — service status</title>" in dom  # no script ran
    assert "pwned" not in dom.split("<main", 1)[0]
    assert "<img" not in dom and "<script>document" not in dom
    assert "&lt;img src=x onerror=" in dom  # shown as text on the tile
    assert 'data-state="down"' in dom
