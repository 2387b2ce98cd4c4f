"""Edge cases of the engine as parametrized tables (one row per case, with an id).

Expected values are written out by hand from CONTRACT §1–§3 and DESIGN.md; every
service-level row is also checked against the brute-force reference.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.reference import Ev, RefCatalog, reference_report
from tests.strategies import apply_all, build_engine, diff_reports

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

LATENESS = 600.0


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


#: Mid-month, far from any boundary: 2024-03-15T12:00:00Z.
NOW = ts("2024-03-15T12:00:00")
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def service(requires: list[Any], target: float = 0.99, period: str = "30d") -> dict[str, Any]:
    return {
        "kind": "external",
        "customers": ["c"],
        "sla": {"target": target, "period": period},
        "restore_time": "30m",
        "requires": requires,
    }


CATALOG: dict[str, Any] = {
    "components": {
        "a": {"team": "t", "kpi": 0.99},
        "b": {"team": "t"},
        "d1": {"team": "net", "kpi": 0.999},
        "d2": {"team": "net", "kpi": 0.999},
        "core": {"team": "net", "kpi": 0.9995},
        "m1": {"team": "t", "kpi": 0.995},
        "m2": {"team": "t", "kpi": 0.995},
        "m3": {"team": "t"},
        "spare": {"team": "t"},  # listed, required by nobody: unmapped
    },
    "services": {
        "solo": service(["a"]),
        "monthly": service(["a"], target=0.999, period="month"),
        "dns": service([{"any": ["d1", "d2"]}], target=0.9995),
        "email": service(["core", {"service": "dns"}], target=0.999),
        "mx": service([{"at_least": 2, "of": ["m1", "m2", "m3"]}]),
        "pair": service(["a", "b"]),
        "hourly": service(["a"], period="1h"),
    },
}


def run(events: list[Ev], now: float = NOW, catalog: dict[str, Any] = CATALOG) -> Any:
    """Apply in the given order; check every number against the reference; return the report."""
    engine = build_engine(catalog, LATENESS)
    apply_all(engine, events)
    report = engine.report(now)
    ref = reference_report(RefCatalog.from_dict(catalog), events, now, LATENESS)
    problems = diff_reports(ref, report)
    assert not problems, "\n".join(problems)
    return report


def down(c: str, t: float) -> Ev:
    return Ev(c, "down", t)


def up(c: str, t: float) -> Ev:
    return Ev(c, "up", t)


def maint(c: str, t: float) -> Ev:
    return Ev(c, "maintenance", t)


# --------------------------------------------------------------------------- windows

WINDOW_CASES = [
    # id, events, window, expected availability of `solo`
    ("no-events", [], "5m", 1.0),
    ("down-exactly-at-window-start", [down("a", NOW - 300)], "5m", 0.0),
    ("down-just-inside", [down("a", NOW - 299)], "5m", 1 / 300),
    ("down-just-outside-then-up-at-start", [down("a", NOW - 301), up("a", NOW - 300)], "5m", 1.0),
    ("outage-straddles-start", [down("a", NOW - 301), up("a", NOW - 299)], "5m", 299 / 300),
    ("down-at-now", [down("a", NOW)], "5m", 1.0),
    ("down-at-now-30m", [down("a", NOW)], "30m", 1.0),
    ("down-1s-before-now", [down("a", NOW - 1)], "1h", 3599 / 3600),
    ("future-event-does-not-count", [down("a", NOW + 60)], "5m", 1.0),
    ("ended-outage-1h", [down("a", NOW - 2 * HOUR), up("a", NOW - HOUR)], "1h", 1.0),
    ("ended-outage-6h", [down("a", NOW - 2 * HOUR), up("a", NOW - HOUR)], "6h", 5 / 6),
    ("down-exactly-30d-ago", [down("a", NOW - 30 * DAY)], "30d", 0.0),
    ("down-30d-plus-1s-ago-up-30d-ago", [down("a", NOW - 30 * DAY - 1), up("a", NOW - 30 * DAY)],
     "30d", 1.0),
    ("maintenance-only", [maint("a", NOW - 600)], "5m", 1.0),
    ("maintenance-then-down", [maint("a", NOW - 600), down("a", NOW - 150)], "5m", 0.0),
    ("half-maintenance-half-down", [maint("a", NOW - 300), down("a", NOW - 150)], "5m", 0.0),
    ("maintenance-excluded", [maint("a", NOW - 30 * MIN), down("a", NOW - 15 * MIN),
                              up("a", NOW - 10 * MIN)], "1h", 40 / 45),
]


@pytest.mark.parametrize(
    ("events", "window", "expected"),
    [pytest.param(e, w, x, id=i) for i, e, w, x in WINDOW_CASES],
)
def test_window_boundaries(events: list[Ev], window: str, expected: float) -> None:
    report = run(events)
    assert report.services["solo"].availability_ratio[window] == pytest.approx(expected, abs=1e-12)
    assert report.components["a"].availability_ratio[window] == pytest.approx(expected, abs=1e-12)


STATE_AT_NOW = [
    # id, events, state, outage_seconds, outages_total
    ("nothing", [], "up", 0.0, 0),
    ("down-at-now", [down("a", NOW)], "down", 0.0, 1),
    ("down-before-now", [down("a", NOW - 90)], "down", 90.0, 1),
    ("up-at-now-ends-outage", [down("a", NOW - 90), up("a", NOW)], "up", 0.0, 1),
    ("future-down", [down("a", NOW + 60)], "up", 0.0, 0),
    ("future-up-ongoing-outage", [down("a", NOW - 90), up("a", NOW + 60)], "down", 90.0, 1),
    ("maintenance", [maint("a", NOW - 90)], "maintenance", 0.0, 0),
    ("maintenance-after-outage", [down("a", NOW - 90), maint("a", NOW - 30)], "maintenance", 0.0,
     1),
    ("two-outages", [down("a", NOW - 90), up("a", NOW - 60), down("a", NOW - 30)], "down", 30.0,
     2),
    ("outage-maintenance-outage",
     [down("a", NOW - 90), maint("a", NOW - 60), down("a", NOW - 30)], "down", 30.0, 2),
    ("heartbeats-do-not-split", [down("a", NOW - 90), down("a", NOW - 60), down("a", NOW - 30)],
     "down", 90.0, 1),
]


@pytest.mark.parametrize(
    ("events", "state", "outage", "count"),
    [pytest.param(*row[1:], id=row[0]) for row in STATE_AT_NOW],
)
def test_state_and_outage_at_now(events: list[Ev], state: str, outage: float, count: int) -> None:
    s = run(events).services["solo"]
    assert s.state.label == state
    assert s.up == (state != "down")
    assert s.maintenance == (state == "maintenance")
    assert s.outage_seconds == pytest.approx(outage)
    assert s.outages_total == count


def test_future_event_counts_once_now_passes_it() -> None:
    events = [down("a", NOW + 60)]
    assert run(events, NOW).services["solo"].state.label == "up"
    later = run(events, NOW + 120).services["solo"]
    assert later.state.label == "down"
    assert later.availability_ratio["5m"] == pytest.approx(240 / 300)
    assert later.outage_seconds == pytest.approx(60.0)


# --------------------------------------------------------------------------- long outages


def test_outage_longer_than_30_days() -> None:
    events = [down("a", NOW - 40 * DAY)]
    s = run(events).services["solo"]
    assert s.state.label == "down"
    assert s.outage_seconds == pytest.approx(40 * DAY)
    assert s.availability_ratio["30d"] == 0.0
    assert s.sla_availability_ratio == 0.0
    assert s.sla_status == 2
    assert s.outages_total == 1
    assert s.downtime_seconds_total == 0.0  # not ended yet
    assert s.downtime_by_component_seconds == pytest.approx({"a": 30 * DAY})


def test_outage_longer_than_30_days_survives_pruning() -> None:
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, [down("a", NOW - 40 * DAY), up("c", NOW - 39 * DAY)])
    for t in (NOW - 20 * DAY, NOW - DAY, NOW):
        engine.prune(t)
    s = engine.report(NOW).services["solo"]
    assert s.state.label == "down"
    assert s.outage_seconds == pytest.approx(40 * DAY)
    assert s.availability_ratio["30d"] == 0.0
    assert s.outages_total == 1
    assert engine.report(NOW).components["a"].state.label == "down"


def test_ended_long_outage_counter_survives_pruning() -> None:
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, [down("a", NOW - 80 * DAY), up("a", NOW - 45 * DAY)])
    engine.prune(NOW)
    s = engine.report(NOW).services["solo"]
    assert s.state.label == "up"
    assert s.outages_total == 1
    assert s.downtime_seconds_total == pytest.approx(35 * DAY)
    assert s.availability_ratio["30d"] == 1.0


def test_prune_keeps_every_window_exact() -> None:
    events = [
        down("a", NOW - 31 * DAY), up("a", NOW - 29 * DAY), down("a", NOW - 3 * DAY),
        up("a", NOW - 2 * DAY), maint("a", NOW - HOUR), up("a", NOW - 10 * MIN),
    ]
    want = run(events)
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, events)
    engine.prune(NOW)
    got = engine.report(NOW)
    for name in CATALOG["services"]:
        assert got.services[name].availability_ratio == pytest.approx(want.services[name].availability_ratio)
        assert got.services[name].sla_availability_ratio == pytest.approx(
            want.services[name].sla_availability_ratio
        )


# --------------------------------------------------------------------------- calendar month

MONTHS = {  # (a now on the 20th at noon, days in that month)
    "feb-2023-28d": (ts("2023-02-20T12:00:00"), 28),
    "feb-2024-29d": (ts("2024-02-20T12:00:00"), 29),
    "apr-2024-30d": (ts("2024-04-20T12:00:00"), 30),
    "mar-2024-31d": (ts("2024-03-20T12:00:00"), 31),
    "dec-2024-31d": (ts("2024-12-20T12:00:00"), 31),
}

# An outage of D seconds, ongoing at now, target 0.999: burn over 1h = D / 3.6, over
# 5m = 1000 (for D >= 300 it would be; here D < 300 so D/0.3). The 1h/5m factor is
# 0.02 * month / 1h: 13.44 (28 d), 13.92 (29 d), 14.4 (30 d), 14.88 (31 d).
TREND_CASES = [
    ("49s", 49.0, {28: 1, 29: 0, 30: 0, 31: 0}),
    ("51s", 51.0, {28: 1, 29: 1, 30: 0, 31: 0}),
    ("53s", 53.0, {28: 1, 29: 1, 30: 1, 31: 0}),
    ("54s", 54.0, {28: 1, 29: 1, 30: 1, 31: 1}),
]


@pytest.mark.parametrize(
    ("now", "days", "outage", "expected"),
    [
        pytest.param(now, days, d, exp[days], id=f"{m}-{i}")
        for m, (now, days) in MONTHS.items()
        for i, d, exp in TREND_CASES
    ],
)
def test_month_trending_factor_uses_month_length(
    now: float, days: int, outage: float, expected: int
) -> None:
    s = run([down("a", now - outage)], now).services["monthly"]
    assert s.burn_rate["1h"] == pytest.approx(outage / 3.6)
    assert s.sla_status == expected
    assert int(s.trending_below_sla) == expected


@pytest.mark.parametrize(
    ("outage", "expected"),
    [pytest.param(51.0, 0, id="14.17<14.4"), pytest.param(52.0, 1, id="14.44>14.4")],
)
def test_rolling_30d_trending_factor_is_14_4(outage: float, expected: int) -> None:
    cat = {"components": {"a": {}}, "services": {"s": service(["a"], 0.999, "30d")}}
    s = run([down("a", NOW - outage)], NOW, cat).services["s"]
    assert int(s.trending_below_sla) == expected


MONTH_BOUNDARY = [
    # id, events, now, sla availability of `monthly`
    ("exactly-at-month-start-empty-period", [down("a", ts("2024-02-29T23:00:00"))],
     ts("2024-03-01T00:00:00"), 1.0),
    ("outage-from-february-counts-from-march-1", [down("a", ts("2024-02-29T23:00:00"))],
     ts("2024-03-01T01:00:00"), 0.0),
    ("february-outage-forgotten-in-march",
     [down("a", ts("2024-02-29T23:00:00")), up("a", ts("2024-03-01T00:00:00"))],
     ts("2024-03-01T01:00:00"), 1.0),
    ("half-of-first-hour", [down("a", ts("2024-02-29T23:00:00")),
                            up("a", ts("2024-03-01T00:30:00"))], ts("2024-03-01T01:00:00"), 0.5),
    ("new-year", [down("a", ts("2024-12-31T23:00:00"))], ts("2025-01-01T00:15:00"), 0.0),
    ("one-second-before-month-end", [down("a", ts("2024-03-31T23:59:59"))],
     ts("2024-04-01T00:00:00"), 1.0),
    ("maintenance-only-month", [maint("a", ts("2024-02-29T23:00:00"))],
     ts("2024-03-01T01:00:00"), 1.0),
]


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in MONTH_BOUNDARY],
)
def test_month_boundary(events: list[Ev], now: float, expected: float) -> None:
    s = run(events, now).services["monthly"]
    assert s.sla_availability_ratio == pytest.approx(expected)


def test_calendar_month_is_utc_not_local() -> None:
    # 2024-03-01T00:30+02:00 is still February in UTC
    now = datetime.fromisoformat("2024-03-01T00:30:00+02:00").timestamp()
    s = run([down("a", ts("2024-02-29T21:00:00"))], now).services["monthly"]
    # down since 21:00 UTC, now is 22:30 UTC on Feb 29: the February period contains it
    assert s.sla_down_seconds == pytest.approx(1.5 * HOUR)


# --------------------------------------------------------------------------- nesting

NESTING = [
    # id, events, service, state, blame (seconds over the SLA period, outage of 100 s)
    ("dns-one-down", [down("d1", NOW - 100)], "email", "up", {}),
    ("dns-both-down", [down("d1", NOW - 100), down("d2", NOW - 100)], "email", "down",
     {"d1": 50.0, "d2": 50.0}),
    ("dns-both-down-dns-itself", [down("d1", NOW - 100), down("d2", NOW - 100)], "dns", "down",
     {"d1": 50.0, "d2": 50.0}),
    ("core-and-dns-down", [down("core", NOW - 100), down("d1", NOW - 100), down("d2", NOW - 100)],
     "email", "down", {"core": 100 / 3, "d1": 100 / 3, "d2": 100 / 3}),
    ("core-down-dns-half", [down("core", NOW - 100), down("d1", NOW - 100)], "email", "down",
     {"core": 100.0}),
    ("dns-maintenance-and-down", [maint("d1", NOW - 100), down("d2", NOW - 100)], "email",
     "maintenance", {}),
    ("dns-one-maintenance", [maint("d1", NOW - 100)], "email", "up", {}),
    ("dns-both-maintenance", [maint("d1", NOW - 100), maint("d2", NOW - 100)], "email",
     "maintenance", {}),
    ("core-maintenance-dns-down", [maint("core", NOW - 100), down("d1", NOW - 100),
                                   down("d2", NOW - 100)], "email", "down",
     {"d1": 50.0, "d2": 50.0}),
    ("mx-one-down", [down("m1", NOW - 100)], "mx", "up", {}),
    ("mx-two-down", [down("m1", NOW - 100), down("m3", NOW - 100)], "mx", "down",
     {"m1": 50.0, "m3": 50.0}),
    ("mx-three-down", [down("m1", NOW - 100), down("m2", NOW - 100), down("m3", NOW - 100)],
     "mx", "down", {"m1": 100 / 3, "m2": 100 / 3, "m3": 100 / 3}),
    ("mx-one-down-one-maintenance", [down("m1", NOW - 100), maint("m2", NOW - 100)], "mx",
     "maintenance", {}),
    ("mx-two-down-one-maintenance", [down("m1", NOW - 100), down("m2", NOW - 100),
                                     maint("m3", NOW - 100)], "mx", "down",
     {"m1": 50.0, "m2": 50.0}),
    ("pair-both-down", [down("a", NOW - 100), down("b", NOW - 100)], "pair", "down",
     {"a": 50.0, "b": 50.0}),
    ("pair-blame-changes", [down("a", NOW - 100), down("b", NOW - 50)], "pair", "down",
     {"a": 75.0, "b": 25.0}),
]


@pytest.mark.parametrize(
    ("events", "name", "state", "blame"),
    [pytest.param(*row[1:], id=row[0]) for row in NESTING],
)
def test_nesting_state_and_attribution(
    events: list[Ev], name: str, state: str, blame: dict[str, float]
) -> None:
    s = run(events).services[name]
    assert s.state.label == state
    got = {c: v for c, v in s.downtime_by_component_seconds.items() if v}
    assert got == pytest.approx(blame)
    assert sum(s.downtime_by_component_seconds.values()) == pytest.approx(s.sla_down_seconds)


def test_service_on_service_events_reach_the_dependant() -> None:
    engine = build_engine(CATALOG, LATENESS)
    assert engine.catalog.services_for("d1") == tuple(sorted(("dns", "email"))) or set(
        engine.catalog.services_for("d1")
    ) == {"dns", "email"}
    assert engine.catalog.components_of("email") == frozenset({"core", "d1", "d2"})


# --------------------------------------------------------------------------- supported

ITIL = {
    "components": {"srv": {"team": "servers", "kpi": 0.99}},
    "services": {"email": service(["srv"], target=0.999)},
}


def contract_catalog() -> dict[str, Any]:
    # The repository's copy (docs/) is always there; the shared original beside the
    # checkout is preferred when present, so a contract change shows up here first.
    root = Path(__file__).parents[3]
    shared = (root / ".." / "shared" / "CONTRACT.md").resolve()
    text = shared if shared.exists() else root / "docs" / "CONTRACT.md"
    body = text.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    data: dict[str, Any] = yaml.safe_load(body)
    return data


def test_itil_example_is_a_kpi_gap() -> None:
    s = run([], NOW, ITIL).services["email"]
    assert s.supported_availability_ratio == pytest.approx(0.99)
    assert s.kpi_gap


def test_contract_example_supported_availability() -> None:
    cat = contract_catalog()
    dns = 1 - 0.001**2
    mx = 0.995 * 0.995 + 2 * 0.995 * 0.005  # at least 2 of (0.995, 0.995, 1)
    email = 0.9995 * (1 - 0.01**2) * dns * mx
    report = run([], NOW, cat)
    assert report.services["dns"].supported_availability_ratio == pytest.approx(dns, rel=1e-12)
    assert report.services["email"].supported_availability_ratio == pytest.approx(email, rel=1e-12)
    assert not report.services["dns"].kpi_gap
    assert not report.services["email"].kpi_gap  # 0.99937 >= 0.999


@pytest.mark.parametrize(
    ("requires", "kpis", "expected"),
    [
        pytest.param(["x"], {"x": None}, 1.0, id="no-kpi-counts-as-1"),
        pytest.param(["x", "y"], {"x": 0.9, "y": 0.8}, 0.72, id="all-product"),
        pytest.param([{"any": ["x", "y"]}], {"x": 0.9, "y": 0.8}, 0.98, id="any"),
        pytest.param([{"at_least": 2, "of": ["x", "y", "z"]}], {"x": 0.9, "y": 0.8, "z": 0.5},
                     0.9 * 0.8 + 0.9 * 0.5 + 0.8 * 0.5 - 2 * 0.9 * 0.8 * 0.5, id="2-of-3"),
        pytest.param([{"at_least": 3, "of": ["x", "y", "z"]}], {"x": 0.9, "y": 0.8, "z": 0.5},
                     0.36, id="3-of-3"),
        pytest.param([{"at_least": 1, "of": ["x", "y"]}], {"x": 0.9, "y": 0.8}, 0.98,
                     id="1-of-2-is-any"),
        pytest.param([{"all": ["x", {"any": ["y", "z"]}]}], {"x": 0.9, "y": 0.8, "z": 0.5},
                     0.9 * 0.9, id="nested"),
    ],
)
def test_supported_availability(
    requires: list[Any], kpis: dict[str, float | None], expected: float
) -> None:
    comps = {c: ({} if k is None else {"kpi": k}) for c, k in kpis.items()}
    cat = {"components": comps, "services": {"s": service(requires, target=0.5)}}
    engine = build_engine(cat)
    assert engine.catalog.supported_availability("s") == pytest.approx(expected, rel=1e-12)
    assert engine.report(NOW).services["s"].supported_availability_ratio == pytest.approx(expected)
    assert engine.catalog.kpi_gap("s") == (expected < 0.5)


# --------------------------------------------------------------------------- SLA math

SLA_MATH = [
    # id, events, expected dict (service `solo`: target 0.99, period 30d)
    ("meeting", [], {"sla_status": 0, "error_budget_remaining_ratio": 1.0,
                     "error_budget_exhaustion_seconds": math.inf, "burn_rate.1h": 0.0}),
    # 600 s down ended 30 min ago: budget = 0.01 * 30 d = 25920 s, 25320 left;
    # last hour 1/6 down -> exhaustion 25320 * 6
    ("recent-outage", [down("a", NOW - 40 * MIN), up("a", NOW - 30 * MIN)],
     {"sla_status": 0, "error_budget_remaining_ratio": 1 - 600 / 25920,
      "error_budget_exhaustion_seconds": 25320 * 6, "burn_rate.1h": (1 / 6) / 0.01,
      "downtime_seconds_total": 600.0, "outages_total": 1}),
    ("old-outage-no-recent-downtime", [down("a", NOW - 3 * HOUR), up("a", NOW - 2 * HOUR)],
     {"error_budget_exhaustion_seconds": math.inf, "error_budget_remaining_ratio": 1 - 3600 / 25920}),
    ("breached", [down("a", NOW - 8 * HOUR)],
     {"sla_status": 2, "error_budget_remaining_ratio": 1 - 8 * 3600 / 25920,
      "error_budget_exhaustion_seconds": 0.0, "trending_below_sla": 0}),
    # budget spent by an old outage, nothing in the last hour: it is gone, so 0 s left
    ("spent-budget-quiet-hour", [down("a", NOW - 20 * HOUR), up("a", NOW - 10 * HOUR)],
     {"sla_status": 2, "error_budget_exhaustion_seconds": 0.0}),
    # trending: 1h burn > 14.4 and 5m burn > 14.4 for a 30 d period with target 0.99
    # needs 1h availability < 1 - 0.144: an ongoing 10 min outage -> burn 16.7
    ("trending", [down("a", NOW - 10 * MIN)],
     {"sla_status": 1, "trending_below_sla": 1, "burn_rate.5m": 100.0}),
    # same outage but ended 6 min ago: the 5 m window is clean -> not trending by 1h/5m
    ("not-trending-short-window-clean", [down("a", NOW - 16 * MIN), up("a", NOW - 6 * MIN)],
     {"sla_status": 0, "trending_below_sla": 0, "burn_rate.5m": 0.0}),
]


@pytest.mark.parametrize(
    ("events", "expected"), [pytest.param(*row[1:], id=row[0]) for row in SLA_MATH]
)
def test_sla_math(events: list[Ev], expected: dict[str, float]) -> None:
    s = run(events).services["solo"]
    for key, want in expected.items():
        got = s.burn_rate[key.split(".", 1)[1]] if key.startswith("burn_rate.") else getattr(s, key)
        assert float(got) == pytest.approx(want), key


# --------------------------------------------------------------------------- classification

CLASSIFY = [
    # id, events in arrival order, expected outcomes
    ("in-order", [down("a", NOW - 60), up("a", NOW)], ["accepted", "accepted"]),
    ("heartbeat", [down("a", NOW - 60), down("a", NOW)], ["accepted", "accepted"]),
    ("duplicate", [down("a", NOW - 60), down("a", NOW - 60)], ["accepted", "duplicate"]),
    ("same-ts-other-state-not-duplicate", [down("a", NOW - 60), up("a", NOW - 60)],
     ["accepted", "accepted"]),
    ("late-by-exactly-lateness-is-not-late", [up("a", NOW), down("a", NOW - 600)],
     ["accepted", "accepted"]),
    ("late-by-a-millisecond", [up("a", NOW), down("a", NOW - 600.001)], ["accepted", "late"]),
    ("late-wins-over-duplicate", [down("a", NOW - 700), up("a", NOW), down("a", NOW - 700)],
     ["accepted", "accepted", "late"]),
    ("duplicate-at-the-horizon", [down("a", NOW - 600), up("a", NOW), down("a", NOW - 600)],
     ["accepted", "accepted", "duplicate"]),
    ("late-is-per-component", [up("a", NOW), down("b", NOW - 3600)], ["accepted", "accepted"]),
    ("first-event-can-be-old", [down("a", NOW - 20 * DAY)], ["accepted"]),
    ("unmapped-listed", [down("spare", NOW)], ["unmapped"]),
    ("unmapped-unknown", [down("nobody-knows-me", NOW)], ["unmapped"]),
    ("unmapped-before-late", [up("spare", NOW), down("spare", NOW - DAY)],
     ["unmapped", "unmapped"]),
    ("unmapped-before-duplicate", [up("spare", NOW), up("spare", NOW)], ["unmapped", "unmapped"]),
]


@pytest.mark.parametrize(
    ("events", "outcomes"), [pytest.param(*row[1:], id=row[0]) for row in CLASSIFY]
)
def test_classification(events: list[Ev], outcomes: list[str]) -> None:
    engine = build_engine(CATALOG, LATENESS)
    assert apply_all(engine, events) == outcomes
    report = run(events)
    for outcome in set(outcomes):
        assert report.events_total[outcome] == outcomes.count(outcome)


@pytest.mark.parametrize(
    "order",
    [pytest.param([0, 1], id="down-first"), pytest.param([1, 0], id="up-first")],
)
def test_same_ts_most_severe_wins_whatever_the_order(order: list[int]) -> None:
    pair = [down("a", NOW - 60), up("a", NOW - 60)]
    events = [pair[i] for i in order]
    s = run(events).services["solo"]
    assert s.state.label == "down"
    assert s.outage_seconds == 60.0


def test_unmapped_components_are_counted_not_labelled() -> None:
    engine = build_engine(CATALOG, LATENESS)
    ids = [f"made-up-{i}" for i in range(50)] + ["spare", "spare", "made-up-1"]
    apply_all(engine, [down(c, NOW) for c in ids])
    report = engine.report(NOW)
    assert report.unmapped_components == 51
    assert report.events_total["unmapped"] == len(ids)
    assert not any(c.startswith("made-up") for c in report.components)
    for s in report.services.values():
        assert not any(c.startswith("made-up") for c in s.downtime_by_component_seconds)


def test_unmapped_listed_component_state_is_tracked() -> None:
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, [down("spare", NOW - 60)])
    c = engine.report(NOW).components["spare"]
    assert c.state.label == "down"
    assert c.availability_ratio["5m"] == pytest.approx(240 / 300)


# --------------------------------------------------------------------------- counters


def test_late_merge_makes_counters_exact_not_sticky() -> None:
    """DESIGN: counters follow the corrected history, like the gauges, so the result is
    the same as sorted arrival (CONTRACT §1) whenever the scrapes happened."""
    events = [down("a", NOW - 40), up("a", NOW - 30), down("a", NOW - 20), up("a", NOW - 10)]
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, events)
    before = engine.report(NOW).services["solo"]
    assert (before.outages_total, before.downtime_seconds_total) == (2, 20.0)
    assert apply_all(engine, [down("a", NOW - 30)]) == ["accepted"]  # most severe wins at -30
    after = engine.report(NOW).services["solo"]
    assert (after.outages_total, after.downtime_seconds_total) == (1, 30.0)  # one outage, -40..-10
    assert after.availability_ratio["5m"] == pytest.approx(270 / 300)


# --------------------------------------------------------------------------- event parsing

P_NOW = ts("2024-03-01T00:00:00")


def _ev(**fields: Any) -> bytes:
    base: dict[str, Any] = {"component": "a", "state": "down", "ts": P_NOW}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not _MISSING})


_MISSING = object()

PARSE_OK = [
    ("rfc3339-z", _ev(ts="2024-03-01T00:00:00Z"), "a", "down", P_NOW),
    ("rfc3339-offset", _ev(ts="2024-03-01T02:00:00+02:00"), "a", "down", P_NOW),
    ("rfc3339-negative-offset", _ev(ts="2024-02-29T19:00:00-05:00"), "a", "down", P_NOW),
    ("rfc3339-fraction", _ev(ts="2024-02-29T23:59:59.250Z"), "a", "down", P_NOW - 0.75),
    ("rfc3339-lowercase-t-z", _ev(ts="2024-03-01t00:00:00z"), "a", "down", P_NOW),
    ("epoch-int", _ev(ts=int(P_NOW)), "a", "down", P_NOW),
    ("epoch-float", _ev(ts=P_NOW - 0.5), "a", "down", P_NOW - 0.5),
    ("state-upper", _ev(state="DOWN"), "a", "down", P_NOW),
    ("state-mixed", _ev(state="Maintenance"), "a", "maintenance", P_NOW),
    ("state-up", _ev(state="Up"), "a", "up", P_NOW),
    ("future-exactly-5m", _ev(ts=P_NOW + 300), "a", "down", P_NOW + 300),
    ("component-200-chars", _ev(component="x" * 200), "x" * 200, "down", P_NOW),
    ("component-all-allowed-chars", _ev(component="A-z_0.9:/@x"), "A-z_0.9:/@x", "down", P_NOW),
    ("unknown-fields-ignored", _ev(extra={"x": 1}, source="nagios", id="42"), "a", "down",
     P_NOW),
]


@pytest.mark.parametrize(
    ("raw", "component", "state", "when"),
    [pytest.param(*row[1:], id=row[0]) for row in PARSE_OK],
)
def test_parse_accepts(raw: bytes, component: str, state: str, when: float) -> None:
    from streams.events import parse_event

    e = parse_event(raw, P_NOW)
    assert (e.component, e.state.label, e.ts) == (component, state, pytest.approx(when))


PARSE_BAD = [
    # id, raw, substrings the reason must contain
    ("not-json", b"{", ["invalid: not JSON"]),
    ("empty", b"", ["invalid: not JSON"]),
    ("binary", b"\xff\xfe", ["invalid: not JSON"]),
    ("nan", b'{"component":"a","state":"down","ts":NaN}', ["invalid:"]),
    ("infinity", b'{"component":"a","state":"down","ts":Infinity}', ["invalid:"]),
    ("huge-number", b'{"component":"a","state":"down","ts":1e400}', ["invalid:"]),
    ("array", b"[1, 2]", ["invalid:", "object"]),
    ("string", b'"down"', ["invalid:", "object"]),
    ("null", b"null", ["invalid:", "object"]),
    ("missing-component", _ev(component=_MISSING), ["invalid: missing field component"]),
    ("missing-state", _ev(state=_MISSING), ["invalid: missing field state"]),
    ("missing-ts", _ev(ts=_MISSING), ["invalid: missing field ts"]),
    ("component-number", _ev(component=5), ["invalid:", "component"]),
    ("component-empty", _ev(component=""), ["invalid:", "component"]),
    ("component-space", _ev(component="a b"), ["invalid:", "component"]),
    ("component-non-ascii", _ev(component="héllo"), ["invalid:", "component"]),
    ("component-201-chars", _ev(component="x" * 201), ["invalid:", "component"]),
    ("component-newline", _ev(component="a\n"), ["invalid:", "component"]),
    ("state-unknown", _ev(state="degraded"), ["invalid:", "state", "degraded"]),
    ("state-null", _ev(state=None), ["invalid:", "state"]),
    ("state-number", _ev(state=1), ["invalid:", "state"]),
    ("ts-naive", _ev(ts="2024-03-01T00:00:00"), ["invalid:", "ts", "offset"]),
    ("ts-bool-true", _ev(ts=True), ["invalid:", "ts"]),
    ("ts-bool-false", _ev(ts=False), ["invalid:", "ts"]),
    ("ts-null", _ev(ts=None), ["invalid:", "ts"]),
    ("ts-object", _ev(ts={}), ["invalid:", "ts"]),
    ("ts-garbage", _ev(ts="yesterday"), ["invalid:", "ts", "yesterday"]),
    ("ts-nan-string", _ev(ts="NaN"), ["invalid:", "ts"]),
    ("ts-future-301s", _ev(ts=P_NOW + 301), ["invalid: ts 301 s in the future"]),
    ("ts-future-rfc3339", _ev(ts="2024-03-01T01:00:00Z"), ["invalid: ts 3600 s in the future"]),
    ("ts-future-10y", _ev(ts=P_NOW + 10 * 365 * DAY), ["invalid:", "future"]),
    ("source-number", _ev(source=5), ["invalid:", "source"]),
    ("id-number", _ev(id=5), ["invalid:", "id"]),
]


@pytest.mark.parametrize(
    ("raw", "needles"), [pytest.param(*row[1:], id=row[0]) for row in PARSE_BAD]
)
def test_parse_rejects_with_reason(raw: bytes, needles: list[str]) -> None:
    from streams.events import InvalidEvent, parse_event

    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, P_NOW)
    for needle in needles:
        assert needle in info.value.reason
    engine = build_engine(CATALOG, LATENESS)
    outcome, reason = engine.apply_raw(raw, P_NOW)
    assert (outcome, reason) == ("invalid", info.value.reason)
    assert engine.report(P_NOW).events_total["invalid"] == 1


def test_apply_raw_late_has_reason_late() -> None:
    engine = build_engine(CATALOG, LATENESS)
    assert engine.apply_raw(_ev(ts=P_NOW), P_NOW) == ("accepted", None)
    assert engine.apply_raw(_ev(ts=P_NOW - 601, state="up"), P_NOW) == ("late", "late")
    assert engine.apply_raw(_ev(ts=P_NOW), P_NOW)[0] == "duplicate"


# --------------------------------------------------------------------------- catalog errors


def _cat(**services: Any) -> dict[str, Any]:
    return {"components": {"x": {"kpi": 0.99}, "y": {}}, "services": services}


CATALOG_BAD = [
    # id, catalog, service, field substrings
    ("unknown-component", _cat(web=service(["x", "typo"])), "web", ["requires", "typo"]),
    ("unknown-component-nested", _cat(web=service([{"any": ["x", {"all": ["nope"]}]}])), "web",
     ["requires", "nope"]),
    ("unknown-service", _cat(web=service([{"service": "ghost"}])), "web", ["requires", "ghost"]),
    ("cycle", _cat(web=service([{"service": "db"}]), db=service([{"service": "web"}])), "web",
     ["cycle"]),
    ("self-cycle", _cat(web=service(["x", {"service": "web"}])), "web", ["cycle"]),
    ("target-0", _cat(web=service(["x"], target=0)), "web", ["target"]),
    ("target-1", _cat(web=service(["x"], target=1)), "web", ["target"]),
    ("target-1.5", _cat(web=service(["x"], target=1.5)), "web", ["target"]),
    ("target-negative", _cat(web=service(["x"], target=-0.5)), "web", ["target"]),
    ("target-string", _cat(web=service(["x"], target="high")), "web", ["target"]),
    ("period-10x", _cat(web=service(["x"], period="10x")), "web", ["period", "10x"]),
    ("period-bare-number", _cat(web=service(["x"], period=30)), "web", ["period"]),
    ("restore-10x", _cat(web={**service(["x"]), "restore_time": "10x"}), "web",
     ["restore_time", "10x"]),
    ("at-least-too-large", _cat(web=service([{"at_least": 3, "of": ["x", "y"]}])), "web",
     ["at_least"]),
]


@pytest.mark.parametrize(
    ("data", "svc", "needles"), [pytest.param(*row[1:], id=row[0]) for row in CATALOG_BAD]
)
def test_catalog_errors_name_file_service_and_field(
    data: dict[str, Any], svc: str, needles: list[str], tmp_path: Path
) -> None:
    from streams.catalog import CatalogError, load_catalog, parse_catalog

    with pytest.raises(CatalogError) as info:
        parse_catalog(data, "conf/services.yaml")
    text = str(info.value)
    for needle in ["conf/services.yaml", svc, *needles]:
        assert needle in text, f"{needle!r} not in {text!r}"

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(path) in str(info.value) or "mine.yaml" in str(info.value)


def test_contract_example_catalog_is_valid() -> None:
    from streams.catalog import parse_catalog

    cat = parse_catalog(contract_catalog(), "CONTRACT.md")
    assert set(cat.services) == {"dns", "email"}
    assert set(cat.services_for("dns-1")) == {"dns", "email"}
    assert cat.services["email"].period.seconds == 30 * DAY


# --------------------------------------------------------------------------- outage list

OUTAGES = [
    # id, events, expected (start offset, end offset or None, seconds, planned, blamed)
    ("none", [], []),
    ("ongoing", [down("a", NOW - 90)], [(-90, None, 90, False, ("a",))]),
    ("ended-inside", [down("a", NOW - 90), up("a", NOW - 30)], [(-90, -30, 60, False, ("a",))]),
    ("began-before-period", [down("a", NOW - 2 * HOUR), up("a", NOW - 30 * MIN)],
     [(-2 * HOUR, -30 * MIN, 1.5 * HOUR, False, ("a",))]),
    ("ended-exactly-at-period-start", [down("a", NOW - 2 * HOUR), up("a", NOW - HOUR)], []),
    ("ended-1s-into-period", [down("a", NOW - 2 * HOUR), up("a", NOW - HOUR + 1)],
     [(-2 * HOUR, -HOUR + 1, HOUR + 1, False, ("a",))]),
    ("planned-then-unplanned", [maint("a", NOW - 90), down("a", NOW - 60), up("a", NOW - 30)],
     [(-90, -60, 30, True, None), (-60, -30, 30, False, ("a",))]),
]


@pytest.mark.parametrize(
    ("events", "expected"), [pytest.param(*row[1:], id=row[0]) for row in OUTAGES]
)
def test_outage_list(events: list[Ev], expected: list[tuple[Any, ...]]) -> None:
    engine = build_engine(CATALOG, LATENESS)
    apply_all(engine, events)
    got = [
        (o.start - NOW, None if o.end is None else o.end - NOW, o.seconds, o.planned,
         None if o.planned else tuple(o.components))
        for o in engine.outages("hourly", NOW)
    ]
    assert got == [tuple(row) for row in expected]


# --------------------------------------------------------------------------- regressions
# Minimal cases found by the property tests; each is checked against the reference.

REGRESSIONS = [
    # b's first event is an `up` ahead of time, then b's past is corrected, then a goes
    # down before the end of that correction: the service timeline must stay sorted.
    ("late-correction-then-open-segment-before-its-end",
     [up("b", NOW - 50), down("b", NOW - 60), down("a", NOW - 57)]),
    ("late-correction-then-open-segment-at-its-start",
     [up("b", NOW - 50), maint("b", NOW - 60), down("a", NOW - 60)]),
    ("late-correction-then-open-segment-up",
     [up("b", NOW - 50), down("b", NOW - 60), up("a", NOW - 57), down("a", NOW - 55)]),
]


# 63 heartbeats spaced beyond the allowed lateness (so the tracker compacts), then an
# event slightly out of order: ComponentTracker.apply raised IndexError (n = 63 mod 64).
REGRESSIONS += [
    (f"compaction-then-out-of-order-{n}",
     [up("a", NOW - 1000 * (n - i)) for i in range(n)] + [down("a", NOW - 1000 - 23)])
    for n in (62, 63, 64, 127)
]


@pytest.mark.parametrize("events", [pytest.param(e, id=i) for i, e in REGRESSIONS])
def test_regressions_match_reference(events: list[Ev]) -> None:
    run(events)


# --------------------------------------------------------------------------- memory bounds


def _points(tracker: Any) -> int:
    """Retained points of a tracker, counted in its persisted form (what the changelog
    and the memory hold)."""
    return len(orjson.dumps(tracker.to_obj()))


def test_heartbeats_do_not_grow_history() -> None:
    engine = build_engine(CATALOG, LATENESS)
    start = NOW - 7 * DAY
    apply_all(engine, [down("a", start)])
    small = (_points(engine.components["a"]), _points(engine.services["solo"]))
    apply_all(engine, [down("a", start + 60 * i) for i in range(1, 10_000)])
    big = (_points(engine.components["a"]), _points(engine.services["solo"]))
    # the duplicate horizon keeps ~10 heartbeats (600 s / 60 s); nothing grows with count
    assert big[0] < small[0] + 40 * 12
    assert big[1] <= small[1] + 40
    s = engine.report(NOW).services["solo"]
    assert s.outage_seconds == pytest.approx(7 * DAY)


def test_history_is_bounded_by_changes_in_the_longest_window() -> None:
    engine = build_engine(CATALOG, LATENESS)
    flaps = [e for i in range(0, 90 * 24) for e in (down("a", NOW - 90 * DAY + i * HOUR),
                                                   up("a", NOW - 90 * DAY + i * HOUR + 60))]
    apply_all(engine, flaps)
    engine.prune(NOW)
    size_90 = _points(engine.components["a"]), _points(engine.services["solo"])
    engine2 = build_engine(CATALOG, LATENESS)
    apply_all(engine2, [e for e in flaps if e.ts >= NOW - 33 * DAY])
    size_33 = _points(engine2.components["a"]), _points(engine2.services["solo"])
    # 90 days of flapping, pruned, holds no more than 33 days of flapping
    assert size_90[0] <= size_33[0] * 1.05
    assert size_90[1] <= size_33[1] * 1.05
    assert engine.report(NOW).services["solo"].availability_ratio == pytest.approx(
        engine2.report(NOW).services["solo"].availability_ratio
    )
