"""CONTRACT §6 edge cases as tables: service time and scheduled maintenance.

Expected values are written out from the contract; every case is also checked whole
against the brute-force reference (tests/reference.py), on the C loops and on the
pure-Python ones.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.reference import Ev, RefCatalog, reference_report
from tests.reference import outages as ref_outages
from tests.strategies import apply_all, build_engine, diff_reports

pytestmark = pytest.mark.usefixtures("engine_path")

BERLIN = ZoneInfo("Europe/Berlin")
MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def berlin(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def catalog(requires: list[Any] | None = None, *, service_time: str | None = "bh",
            period: str = "30d", maintenance: list[dict[str, Any]] | None = None,
            weekly: list[str] | None = None, holidays: list[str] | None = None) -> dict[str, Any]:
    sla: dict[str, Any] = {"target": 0.99, "period": period}
    if service_time:
        sla["service_time"] = service_time
    cat: dict[str, Any] = {
        "service_times": {"bh": {"timezone": "Europe/Berlin",
                                 "weekly": weekly or ["Mon-Fri 08:00-18:00"]}},
        "components": {"a": {"team": "t"}, "b": {"team": "t"}, "c": {"team": "t"}},
        "services": {
            "svc": {"kind": "external", "customers": ["x"], "sla": sla, "restore_time": "30m",
                    "requires": requires or ["a"]},
            "top": {"kind": "external", "customers": ["x"],
                    "sla": {"target": 0.99, "period": "30d"}, "requires": [{"service": "svc"}]},
        },
    }
    if holidays:
        cat["service_times"]["bh"]["except"] = holidays
    if maintenance:
        cat["maintenance"] = maintenance
    return cat


def run(cat: dict[str, Any], events: list[Ev], now: float) -> Any:
    engine = build_engine(cat)
    apply_all(engine, events)
    report = engine.report(now)
    ref = reference_report(RefCatalog.from_dict(cat), events, now)
    problems = diff_reports(ref, report)
    assert not problems, "\n".join(problems)
    return report


def ev(c: str, state: str, t: float) -> Ev:
    return Ev(c, state, t)


# 2024-03-12 is a Tuesday; 2024-03-16 a Saturday.
TUE_1730, WED_0900 = berlin(2024, 3, 12, 17, 30), berlin(2024, 3, 13, 9, 0)

CASES = [
    # id, catalog, events, now, expected {field: value} of service `svc`
    ("outage-17:30-to-09:00-is-two-outages", catalog(),
     [ev("a", "down", TUE_1730), ev("a", "up", WED_0900)], berlin(2024, 3, 13, 12, 0),
     {"outages_total": 2, "downtime_seconds_total": 30 * MIN + 60 * MIN,
      "sla_down_seconds": 90 * MIN, "outage_seconds": 0.0}),
    ("still-down-at-opening-is-a-new-outage", catalog(),
     [ev("a", "down", TUE_1730)], berlin(2024, 3, 13, 8, 20),
     {"outages_total": 2, "downtime_seconds_total": 30 * MIN, "outage_seconds": 20 * MIN,
      "in_service_time": True}),
    ("the-end-of-the-day-ends-the-outage-without-an-event", catalog(),
     [ev("a", "down", TUE_1730)], berlin(2024, 3, 12, 18, 0, 1),
     {"outages_total": 1, "downtime_seconds_total": 30 * MIN, "outage_seconds": 0.0,
      "in_service_time": False, "state": "down", "shown": "outside_service_time"}),
    ("saturday-outage-spends-no-budget", catalog(),
     [ev("a", "down", berlin(2024, 3, 16, 9, 0)), ev("a", "up", berlin(2024, 3, 16, 17, 0))],
     berlin(2024, 3, 16, 18, 0),
     {"outages_total": 0, "sla_down_seconds": 0.0, "error_budget_remaining_ratio": 1.0,
      "sla_availability_ratio": 1.0}),
    ("holiday-outage-spends-no-budget", catalog(holidays=["2024-03-12"]),
     [ev("a", "down", berlin(2024, 3, 12, 9, 0)), ev("a", "up", berlin(2024, 3, 12, 17, 0))],
     berlin(2024, 3, 12, 20, 0), {"outages_total": 0, "sla_down_seconds": 0.0}),
    ("a-window-with-no-service-time-has-availability-1", catalog(),
     [ev("a", "down", berlin(2024, 3, 16, 9, 0))], berlin(2024, 3, 16, 18, 0),
     {"availability_ratio": {"1h": 1.0, "6h": 1.0, "5m": 1.0}, "state": "down"}),
    ("overnight-range-to-next-day-is-one-outage",
     catalog(weekly=["Mon-Sun 22:00-06:00"]),
     [ev("a", "down", berlin(2024, 3, 12, 21, 0)), ev("a", "up", berlin(2024, 3, 13, 7, 0))],
     berlin(2024, 3, 13, 12, 0),
     {"outages_total": 1, "downtime_seconds_total": 8 * HOUR}),
    ("24:00-ends-the-day", catalog(weekly=["Tue 12:00-24:00", "Wed 00:00-01:00"]),
     [ev("a", "down", berlin(2024, 3, 12, 23, 0)), ev("a", "up", berlin(2024, 3, 13, 2, 0))],
     berlin(2024, 3, 13, 12, 0), {"outages_total": 1, "downtime_seconds_total": 2 * HOUR}),
    # The nights the clocks change: 2024-03-31 (02:00 -> 03:00) and 2024-10-27
    # (03:00 -> 02:00) in Berlin; a local 01:00-05:00 lasts 3 h and 5 h.
    ("spring-forward-night-is-shorter", catalog(weekly=["Sun 01:00-05:00"]),
     [ev("a", "down", berlin(2024, 3, 30, 12, 0)), ev("a", "up", berlin(2024, 3, 31, 12, 0))],
     berlin(2024, 3, 31, 13, 0),
     {"outages_total": 1, "downtime_seconds_total": 3 * HOUR, "sla_down_seconds": 3 * HOUR}),
    ("fall-back-night-is-longer", catalog(weekly=["Sun 01:00-05:00"]),
     [ev("a", "down", berlin(2024, 10, 26, 12, 0)), ev("a", "up", berlin(2024, 10, 27, 12, 0))],
     berlin(2024, 10, 27, 13, 0),
     {"outages_total": 1, "downtime_seconds_total": 5 * HOUR, "sla_down_seconds": 5 * HOUR}),
    ("month-runs-in-the-service-time-zone", catalog(period="month", weekly=["Mon-Sun 00:00-24:00"]),
     # 2024-03-01 00:30 in Berlin is 2024-02-29 23:30 UTC: in March's month, in Berlin.
     [ev("a", "down", berlin(2024, 3, 1, 0, 0)), ev("a", "up", berlin(2024, 3, 1, 0, 30))],
     berlin(2024, 3, 12, 12, 0), {"sla_down_seconds": 30 * MIN}),
    # Scheduled maintenance.
    ("window-on-a-component-makes-its-down-planned",
     catalog(service_time=None, maintenance=[{"name": "p", "components": ["a"],
                                              "weekly": ["Sun 02:00-04:00"],
                                              "timezone": "Europe/Berlin"}]),
     [ev("a", "down", berlin(2024, 3, 10, 2, 30)), ev("a", "up", berlin(2024, 3, 10, 3, 30))],
     berlin(2024, 3, 10, 3, 0),
     {"state": "maintenance", "scheduled_maintenance": True, "outages_total": 0,
      "sla_down_seconds": 0.0, "shown": "scheduled_maintenance"}),
    ("window-opens-during-an-outage-of-another-component",
     catalog(["a", "b"], service_time=None,
             maintenance=[{"name": "p", "components": ["b"], "start": "2024-03-10T02:00:00Z",
                           "end": "2024-03-10T04:00:00Z"}]),
     [ev("a", "down", berlin(2024, 3, 10, 2, 0)), ev("a", "up", berlin(2024, 3, 10, 6, 0))],
     berlin(2024, 3, 10, 7, 0),
     {"state": "up", "outages_total": 1, "downtime_seconds_total": 4 * HOUR}),
    ("window-on-the-partner-of-a-down-component-is-planned",
     catalog([{"any": ["a", "b"]}], service_time=None,
             maintenance=[{"name": "p", "components": ["b"], "start": "2024-03-10T02:00:00Z",
                           "end": "2024-03-10T04:00:00Z"}]),
     [ev("a", "down", berlin(2024, 3, 10, 2, 0)), ev("a", "up", berlin(2024, 3, 10, 6, 0))],
     berlin(2024, 3, 10, 7, 0), {"outages_total": 0, "sla_down_seconds": 0.0}),
    ("window-on-the-service-covers-any-failure",
     catalog(["a", "b"], service_time=None,
             maintenance=[{"name": "swap", "services": ["svc"], "start": "2024-03-10T01:00:00Z",
                           "end": "2024-03-10T05:00:00Z"}]),
     [ev("a", "down", berlin(2024, 3, 10, 2, 30)), ev("b", "down", berlin(2024, 3, 10, 3, 0)),
      ev("a", "up", berlin(2024, 3, 10, 4, 0)), ev("b", "up", berlin(2024, 3, 10, 8, 0))],
     berlin(2024, 3, 10, 9, 0),
     # down from the window's end (06:00 local) to b's return at 08:00
     {"outages_total": 1, "downtime_seconds_total": 2 * HOUR}),
    ("events-inside-a-window-are-kept-for-after-it",
     catalog(service_time=None, maintenance=[{"name": "p", "components": ["a"],
                                              "start": "2024-03-10T01:00:00Z",
                                              "end": "2024-03-10T02:00:00Z"}]),
     [ev("a", "down", berlin(2024, 3, 10, 2, 30))], berlin(2024, 3, 10, 3, 30),
     {"state": "down", "outage_seconds": 30 * MIN, "outages_total": 1}),
]


@pytest.mark.parametrize(("cat", "events", "now", "expected"),
                         [pytest.param(c, e, n, x, id=i) for i, c, e, n, x in CASES])
def test_calendar_cases(cat: dict[str, Any], events: list[Ev], now: float,
                        expected: dict[str, Any]) -> None:
    s = run(cat, events, now).services["svc"]
    for field, want in expected.items():
        got = getattr(s, field)
        if field == "state":
            got = got.label
        if isinstance(want, dict):
            for k, v in want.items():
                assert got[k] == pytest.approx(v), (field, k)
        else:
            assert got == pytest.approx(want), field


def test_service_dependency_sees_the_window() -> None:
    """`top` requires `svc` through `service:`: a window on `svc` puts `top` in
    (scheduled) maintenance too, and spends none of its budget."""
    cat = catalog(service_time=None, maintenance=[
        {"name": "swap", "services": ["svc"], "start": "2024-03-10T01:00:00Z",
         "end": "2024-03-10T05:00:00Z"}])
    events = [ev("a", "down", berlin(2024, 3, 10, 3, 0)), ev("a", "up", berlin(2024, 3, 10, 4, 0))]
    r = run(cat, events, berlin(2024, 3, 10, 3, 30)).services["top"]
    assert r.scheduled_maintenance and r.state.label == "maintenance"
    assert r.sla_down_seconds == 0.0


def test_numbers_move_at_the_boundary_without_an_event() -> None:
    """The same engine, no event in between: at 17:59 the outage grows, at 18:01 the
    service is outside service time and the outage has ended."""
    cat = catalog()
    engine = build_engine(cat)
    apply_all(engine, [ev("a", "down", TUE_1730)])
    before = engine.report(berlin(2024, 3, 12, 17, 59)).services["svc"]
    after = engine.report(berlin(2024, 3, 12, 18, 1)).services["svc"]
    assert before.in_service_time and before.outage_seconds == 29 * MIN
    assert not after.in_service_time and after.outage_seconds == 0.0
    assert after.downtime_seconds_total == 30 * MIN and after.outages_total == 1
    # [17:01, 18:01] holds 59 minutes of service time: 29 up, 30 down
    assert after.availability_ratio["1h"] == pytest.approx(29 / 59)


def test_reload_with_another_calendar_re_evaluates_history() -> None:
    cat = catalog()
    engine = build_engine(cat)
    events = [ev("a", "down", berlin(2024, 3, 16, 9, 0)), ev("a", "up", berlin(2024, 3, 16, 17, 0))]
    apply_all(engine, events)
    now = berlin(2024, 3, 16, 18, 0)
    assert engine.report(now).services["svc"].sla_down_seconds == 0.0
    wider = copy.deepcopy(cat)
    wider["service_times"]["bh"]["weekly"] = ["Mon-Sat 08:00-18:00"]
    from streams.catalog import parse_catalog

    engine.set_catalog(parse_catalog(wider, "wider.yaml"))
    report = engine.report(now)
    assert report.services["svc"].sla_down_seconds == 8 * HOUR
    ref = reference_report(RefCatalog.from_dict(wider), events, now)
    assert not diff_reports(ref, report)


def test_outage_list_is_cut_by_service_time() -> None:
    cat = catalog()
    engine = build_engine(cat)
    events = [ev("a", "down", TUE_1730), ev("a", "up", WED_0900)]
    apply_all(engine, events)
    now = berlin(2024, 3, 13, 12, 0)
    got = [(o.start, o.end, o.seconds) for o in engine.outages("svc", now)]
    assert got == [(TUE_1730, berlin(2024, 3, 12, 18, 0), 30 * MIN),
                   (berlin(2024, 3, 13, 8, 0), WED_0900, 60 * MIN)]
    from tests.reference import StepFunctions, classify

    rc = RefCatalog.from_dict(cat)
    ref = ref_outages(rc, StepFunctions(classify(rc, events)[1]), "svc", now)
    assert [(o.start, o.end, o.seconds) for o in ref] == got
