"""The failure simulator: deterministic, plausible, and it makes one service trend."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from agents.clients.simulator import (
    SimulationConfig,
    Simulator,
    choose_flapper,
    run_simulation,
    single_points_of_failure,
)
from streams.catalog import load_catalog
from streams.engine import Engine
from streams.events import parse_event

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "config" / "services.yaml"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def catalog():  # type: ignore[no-untyped-def]
    return load_catalog(CATALOG)


def _schedule(catalog, seed: int, start: float, hours: float = 6):  # type: ignore[no-untyped-def]
    sim = Simulator(catalog, SimulationConfig(seed=seed), start)
    return sim, sim.initial_events() + list(sim.events_until(start + hours * 3600))


def test_same_seed_same_schedule_relative_to_start(catalog) -> None:  # type: ignore[no-untyped-def]
    _, a = _schedule(catalog, 7, T0)
    _, b = _schedule(catalog, 7, T0 + 1234.5)
    assert [(e.ts - T0, e.component, e.state) for e in a] == [
        (pytest.approx(e.ts - T0 - 1234.5), e.component, e.state) for e in b
    ]
    _, c = _schedule(catalog, 8, T0)
    assert [(e.component, e.state) for e in a] != [(e.component, e.state) for e in c]


def test_schedule_is_ordered_alternating_and_plausible(catalog) -> None:  # type: ignore[no-untyped-def]
    sim, events = _schedule(catalog, 1, T0)
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert {e.component for e in events[: len(sim.components) + 2]} >= set(catalog.components)
    last: dict[str, str] = {}
    for e in events:
        assert e.state in ("up", "down", "maintenance")
        if e.component in last and e.ts > T0:
            assert e.state != last[e.component], f"{e.component} repeats {e.state}"
            assert (e.state == "up") != (last[e.component] == "up")  # up <-> not up
        last[e.component] = e.state
    states = Counter(e.state for e in events if e.ts > T0)
    assert states["down"] > 10 and states["maintenance"] >= 1
    assert {"printer-2f", "lab-vm-17"} <= {e.component for e in events}  # unmapped ids


def test_auto_choice_is_payments_psp_link(catalog) -> None:  # type: ignore[no-untyped-def]
    assert "psp-link" in single_points_of_failure(catalog, "payments")
    assert "mail-srv-01" not in single_points_of_failure(catalog, "email")
    assert choose_flapper(catalog, "auto") == ("payments", "psp-link")
    assert choose_flapper(catalog, "none") == (None, None)
    assert choose_flapper(catalog, "wiki") == ("wiki", "wiki-srv")
    with pytest.raises(ValueError, match="no such service"):
        choose_flapper(catalog, "nope")


def test_opening_incident_fails_a_redundant_mail_server_soon_after_going_live(catalog) -> None:  # type: ignore[no-untyped-def]
    sim = Simulator(catalog, SimulationConfig(seed=1, backfill=3600.0), T0)
    assert sim.opening_component == "mail-srv-01"
    live = T0 + 3600
    list(sim.events_until(live))
    soon = [e for e in sim.events_until(live + 200) if e.component == "mail-srv-01"]
    assert [(e.ts - live, e.state) for e in soon] == [(20.0, "down"), (140.0, "up")]
    off = Simulator(catalog, SimulationConfig(seed=1, backfill=3600.0, opening_incident=None), T0)
    assert off.opening_component is None


def test_flapping_service_trends_but_is_not_breached(catalog) -> None:  # type: ignore[no-untyped-def]
    for seed in (1, 2, 3):
        sim, events = _schedule(catalog, seed, T0)
        engine = Engine(catalog)
        now = T0 + 6 * 3600
        for e in events:
            raw = orjson.dumps({"component": e.component, "state": e.state, "ts": e.ts})
            engine.apply(parse_event(raw, now))
        report = engine.report(now)
        pay = report.services[sim.trending_service or ""]
        assert pay.sla_status == 1, (seed, pay.sla_availability_ratio, pay.availability_ratio)
        assert pay.trending_below_sla


def test_run_simulation_backfills_then_goes_live_with_heartbeats(catalog) -> None:  # type: ignore[no-untyped-def]
    now = time.time()
    sim = Simulator(catalog, SimulationConfig(seed=3, heartbeat_rate=200.0), now - 3600)
    sent: list[tuple[bytes, bytes]] = []
    stop = threading.Event()
    progress = run_simulation(sim, lambda k, v: sent.append((k, v)), stop=stop, duration=0.5)
    assert progress.backfilled > len(catalog.components)
    assert 50 <= progress.heartbeats <= 150
    assert progress.total == len(sent)
    check = time.time()
    ts = [parse_event(v, check).ts for _, v in sent]
    assert all(parse_event(v, check).component.encode() == k for k, v in sent)
    back = ts[: progress.backfilled]
    assert back == sorted(back) and back[0] == pytest.approx(now - 3600)
    assert all(t <= check for t in ts)
    assert all(t >= now - 1 for t in ts[progress.backfilled :])


def test_simulate_dry_run_pipes_json_lines() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "simulate", "--dry-run", "--duration", "0.3",
         "--backfill", "1h", "--heartbeat-rate", "20", "--catalog", str(CATALOG)],
        capture_output=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.splitlines()
    now = time.time()
    events = [parse_event(line, now) for line in lines]
    assert len(events) > 32
    assert b"payments will trend below its SLA (psp-link flaps)" in proc.stderr
    assert {e.source for e in events} == {"slawatch-sim"}


@pytest.mark.integration
def test_simulate_publishes_to_a_broker() -> None:
    from kafka import KafkaConsumer

    from agents.clients.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        broker.create_topics({"component-events": 4})
        proc = subprocess.run(
            [sys.executable, "-m", "agents.cli.main", "simulate", "--broker", broker.url,
             "--duration", "1", "--backfill", "1h", "--heartbeat-rate", "50", "--seed", "5"],
            capture_output=True, timeout=60, cwd="/",  # the example catalog is found anyway
        )
        assert proc.returncode == 0, proc.stderr.decode()
        m = re.search(rb"sent (\d+) events .*, 0 failed", proc.stderr)
        assert m, proc.stderr.decode()
        consumer = KafkaConsumer("component-events", bootstrap_servers=broker.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        try:
            got = list(consumer)
        finally:
            consumer.close()
    assert len(got) == int(m.group(1)) > 40
    assert all(parse_event(r.value, time.time()).component.encode() == r.key for r in got)
