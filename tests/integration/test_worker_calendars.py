"""CONTRACT §6 end to end: the real worker on a real broker, with a service time and
maintenance windows, against the brute-force reference (tests/reference.py).

The worker's clock is real, so the calendars are laid out around the current time: a
Berlin service time with ranges that closed an hour ago and one that is open now, a
weekly New York window on two components and a one-off window on a service, all
inside the two hours the generated stream covers. The events carry their own times
(ts), so what the worker computes is fixed; only ``now`` moves, and each scrape is
compared with the reference computed just before and just after it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.clients.broker import EmbeddedBroker
from streams.events import InvalidEvent, parse_event
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    Samples,
    publish_messages,
    reference_engine,
    scenario,
    wait_counted,
    wait_matches,
)
from tests.reference import Ev, RefCatalog, reference_report

pytestmark = pytest.mark.integration

COMPONENTS = ["mail-srv-01", "mail-srv-02", "core-sw-1", "dns-1", "dns-2", "mx-1", "mx-2"]
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _weekly(a: float, b: float, zone: str) -> str:
    """ "Day HH:MM-HH:MM" for the instants [a, b) read on a clock in ``zone``."""
    tz = ZoneInfo(zone)
    la, lb = datetime.fromtimestamp(a, tz), datetime.fromtimestamp(b, tz)
    return f"{DAYS[la.weekday()]} {la:%H:%M}-{lb:%H:%M}"


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def calendar_catalog(now: float) -> str:
    q = math.floor(now / 900.0) * 900.0  # quarter hours: what the reference scans
    m = 60.0
    return EXAMPLE_CATALOG.replace(
        "    sla: {target: 0.999, period: 30d}",
        "    sla: {target: 0.999, period: month, service_time: office}",
    ) + f"""
service_times:
  office:
    timezone: Europe/Berlin
    weekly: ["{_weekly(q - 105 * m, q - 60 * m, 'Europe/Berlin')}",
             "{_weekly(q - 45 * m, q + 30 * m, 'Europe/Berlin')}"]
maintenance:
  - name: patching
    components: [mail-srv-01, core-sw-1]
    weekly: ["{_weekly(q - 90 * m, q - 75 * m, 'America/New_York')}"]
    timezone: America/New_York
  - name: dns-swap
    services: [dns]
    start: "{_rfc3339(q - 80 * m)}"
    end: "{_rfc3339(q - 50 * m)}"
"""


def reference_samples(catalog_text: str, arrivals: list[Ev], now: float) -> Samples:
    """The service and component numbers of tests/reference.py at ``now``, as series."""
    import yaml

    rep = reference_report(RefCatalog.from_dict(yaml.safe_load(catalog_text)), arrivals, now)
    kinds = {"dns": "internal", "email": "external"}
    out: Samples = {}
    for name, s in rep.services.items():
        lab = frozenset({("service", name), ("kind", kinds[name])})
        values = {
            "slawatch_service_up": s.up, "slawatch_service_maintenance": s.maintenance,
            "slawatch_service_in_service_time": s.in_service_time,
            "slawatch_service_scheduled_maintenance": s.scheduled_maintenance,
            "slawatch_service_sla_availability_ratio": s.sla_availability,
            "slawatch_service_outage_seconds": s.outage_seconds,
            "slawatch_service_outages_total": s.outages_total,
            "slawatch_service_downtime_seconds_total": s.downtime_seconds_total,
            "slawatch_service_error_budget_remaining_ratio": s.error_budget_remaining,
        }
        for metric, v in values.items():
            out[(metric, lab)] = float(v)
        for w, a in s.availability.items():
            out[("slawatch_service_availability_ratio", lab | {("window", w)})] = a
    for comp, c in rep.components.items():
        team = "network" if comp.startswith(("core", "dns")) else "servers"
        lab = frozenset({("component", comp), ("team", team)})
        out[("slawatch_component_up", lab)] = float(c.up)
        for w, a in c.availability.items():
            out[("slawatch_component_availability_ratio", lab | {("window", w)})] = a
    return out


def test_worker_applies_calendars_as_the_reference(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    now = time.time()
    text = calendar_catalog(now)
    messages = scenario(COMPONENTS, 500, seed=15, now=now)
    arrivals = []
    for _, value, _ in messages:
        try:
            e = parse_event(value, now)
        except InvalidEvent:
            continue
        arrivals.append(Ev(e.component, e.state.label, e.ts))
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    engine, _ = reference_engine(text, messages)
    publish_messages(kafka_broker, messages)
    worker = worker_factory(kafka_broker, catalog)
    wait_counted(worker, len(messages), timeout=60)
    wait_matches([worker], engine)

    # The same scrape against the brute-force reference, bracketed in time.
    deadline = time.monotonic() + 30
    problems: list[str] = ["never compared"]
    while problems and time.monotonic() < deadline:
        t0 = time.time()
        got = worker.scrape()
        t1 = time.time()
        ref0, ref1 = reference_samples(text, arrivals, t0), reference_samples(text, arrivals, t1)
        problems = []
        for key, a in ref0.items():
            b = ref1[key]
            v = got.get(key)
            lo, hi = min(a, b), max(a, b)
            if v is None or not (lo - 1e-9 <= v <= hi + 1e-9):
                problems.append(f"{key[0]}{dict(key[1])}: worker {v}, reference {a} .. {b}")
        if problems:
            time.sleep(0.5)
    assert not problems, "\n".join(problems[:20])
    # The calendars did something: the stream has outages cut by service time.
    email = frozenset({("service", "email"), ("kind", "external")})
    assert got[("slawatch_service_in_service_time", email)] == 1.0
    ref = reference_samples(text, arrivals, time.time())
    plain = reference_samples(EXAMPLE_CATALOG, arrivals, time.time())
    assert ref[("slawatch_service_outages_total", email)] != plain[
        ("slawatch_service_outages_total", frozenset({("service", "email"), ("kind", "external")}))]

    # A reload that changes the calendars re-evaluates the history kept: the worker
    # follows the reference of the new catalog, without a restart.
    wider = text.replace('    weekly: ["', '    weekly: ["Mon-Sun 00:00-24:00", "', 1)
    catalog.write_text(wider)
    wider_ref, _ = reference_engine(wider, messages)
    t = time.time()
    before = engine.report(t).services["email"]
    after = wider_ref.report(t).services["email"]
    assert (before.outages_total, before.sla_up_seconds) != (after.outages_total,
                                                             after.sla_up_seconds)
    wait_matches([worker], wider_ref)
    assert worker.alive()
