"""The status page at `/`, rendered by a real headless Chromium against a real worker.

What a NOC screen shows must be what the API says: every service has a tile, and each
tile's state and SLA status are the API's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures_kafka import event_bytes, publish_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATALOG = """
components:
  web-1: {team: apps, kpi: 0.999}
  db-1: {team: databases, kpi: 0.999}
  vpn-gw: {team: network, kpi: 0.999}
services:
  shop:
    kind: external
    customers: [customers]
    sla: {target: 0.999, period: 30d}
    restore_time: 30m
    requires: [web-1, db-1]
  vpn:
    kind: internal
    customers: [staff]
    sla: {target: 0.99, period: month}
    requires: [vpn-gw]
"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("SLAWATCH_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip("chromium is not installed (SLAWATCH_ALLOW_MISSING_TOOLS=1)")
        pytest.fail("chromium is not installed: run `make system-deps` (scripts/install-system-deps)")
    return path


def browse(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with the flags this sandbox needs (no network beyond loopback)."""
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
         "--virtual-time-budget=8000", *extra, url],
        capture_output=True, text=True, timeout=90,
    )


def tiles(dom: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for attrs in re.findall(r"<section ([^>]*)>", dom):
        fields = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs))
        if "service" in fields:
            out[fields["service"]] = fields
    return out


def _services_once(worker: Any, service: str, state: str, timeout: float = 30.0
                   ) -> dict[str, Any]:
    """``/api/services`` by name, polled until ``service`` is in ``state`` (or the
    timeout: the caller's assertions then say what was there)."""
    deadline = time.monotonic() + timeout
    api: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = worker.get("/api/services")
        if status == 200:
            api = {s["service"]: s for s in orjson.loads(body)["services"]}
            if api.get(service, {}).get("state") == state:
                break
        time.sleep(0.5)
    return api


def test_page_renders_the_state_the_api_reports(
    kafka_broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    catalog = tmp_path / "services.yaml"
    catalog.write_text(CATALOG)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=60)
    now = time.time()
    # db-1 has been down for 20 minutes: shop is down, and far below its SLA.
    publish_messages(kafka_broker, [
        (b"db-1", event_bytes("db-1", "down", now - 1200), None),
        (b"vpn-gw", event_bytes("vpn-gw", "up", now - 600), None),
    ])
    api = _services_once(worker, "shop", "down")
    assert api["shop"]["state"] == "down", api

    status, page = worker.get("/")
    assert status == 200 and b"<title>slawatch" in page

    result = browse(worker.url + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    # The page was rendered between these two reads of the API; a down service's
    # budget falls meanwhile, so the page's value must lie between them.
    after = _services_once(worker, "shop", "down")
    shown = tiles(result.stdout)
    assert set(shown) == set(api) == {"shop", "vpn"}
    for name, svc in api.items():
        assert shown[name]["state"] == svc["state"], name
        assert shown[name]["sla-status"] == svc["sla"]["status"], name
    assert shown["shop"]["state"] == "down"
    assert shown["vpn"]["state"] == "up"
    # External services first: the customers' promise leads the wall.
    assert result.stdout.index('data-service="shop"') < result.stdout.index('data-service="vpn"')
    assert "Outage for 20m" in result.stdout
    assert "db-1" in result.stdout  # blamed component named on the tile

    # Every bar has its legend; per service the budget line ends at the API's budget
    # left, the timeline has a mark per outage of the SLA period, the KPI gap is shown.
    assert result.stdout.count("<span><i") == 6
    for name, svc in api.items():
        section = re.search(rf'<section [^>]*data-service="{name}".*?</section>', result.stdout, re.S)
        assert section, name
        html = section.group(0)
        left = re.search(r'class="budget"[^>]*data-budget-left="([-0-9.]+)"', html)
        bounds = sorted((svc["sla"]["error_budget_remaining"],
                         after[name]["sla"]["error_budget_remaining"]))
        assert left and bounds[0] - 1e-3 <= float(left.group(1)) <= bounds[1] + 1e-3, (
            name, left and left.group(1), bounds)
        assert ("KPI GAP" in html) == svc["kpi_gap"], name
        status, body = worker.get(f"/api/services/{name}/outages")
        outages = orjson.loads(body)["outages"]
        assert html.count('class="unplanned"') == sum(not o["planned"] for o in outages), name
        assert html.count('class="planned"') == sum(o["planned"] for o in outages), name
    assert api["shop"]["kpi_gap"] and 'class="unplanned"' in result.stdout

    shot = tmp_path / "status.png"
    result = browse(worker.url + "/", tmp_path, f"--screenshot={shot}", "--window-size=1280,720")
    assert result.returncode == 0 and shot.stat().st_size > 5000


def _calendar_catalog(now: float) -> str:
    """`desk` is agreed only on a day two days from now (outside service time now);
    `shop`'s database is in a maintenance window open now (CONTRACT §6)."""
    from datetime import UTC, datetime

    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[
        (datetime.fromtimestamp(now, UTC).weekday() + 2) % 7]
    start = datetime.fromtimestamp(now - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(now + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return CATALOG.replace("services:\n", "services:\n  desk:\n    kind: internal\n"
                           "    sla: {target: 0.99, period: 30d, service_time: office}\n"
                           "    requires: [vpn-gw]\n") + f"""
service_times:
  office: {{timezone: UTC, weekly: ["{day} 08:00-18:00"]}}
maintenance:
  - {{name: db-swap, components: [db-1], start: "{start}", end: "{end}"}}
"""


def test_page_shows_outside_service_time_and_scheduled_maintenance(
    kafka_broker: Any, worker_factory: Any, tmp_path: Path
) -> None:
    now = time.time()
    catalog = tmp_path / "services.yaml"
    catalog.write_text(_calendar_catalog(now))
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=60)
    publish_messages(kafka_broker, [
        (b"db-1", event_bytes("db-1", "down", now - 600), None),  # inside the window
        (b"vpn-gw", event_bytes("vpn-gw", "down", now - 600), None),  # desk: outside
    ])
    api = _services_once(worker, "vpn", "down")
    assert api["shop"]["shown"] == "scheduled_maintenance", api["shop"]
    assert api["shop"]["state"] == "maintenance" and api["shop"]["scheduled_maintenance"]
    assert api["desk"]["shown"] == "outside_service_time", api["desk"]
    assert api["desk"]["state"] == "down" and not api["desk"]["in_service_time"]
    assert api["desk"]["sla"]["down_seconds"] == 0.0
    assert api["vpn"]["shown"] == "down"
    _, metrics = worker.get("/metrics")
    assert b'slawatch_service_in_service_time{kind="internal",service="desk"} 0.0' in metrics
    assert b'slawatch_service_scheduled_maintenance{kind="external",service="shop"} 1.0' in metrics

    result = browse(worker.url + "/", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    shown = tiles(result.stdout)
    for name, svc in api.items():
        assert shown[name]["shown"] == svc["shown"], name
    assert "SCHEDULED MAINTENANCE" in result.stdout and "OUTSIDE SERVICE TIME" in result.stdout
