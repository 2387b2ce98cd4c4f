"""CONTRACT §6 calendars: parsing, refusal of bad ones, and their intervals.

The intervals are checked against the definition (the local wall clock), tested at
every minute, not against numbers written down.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.calendars import WeeklySchedule, parse_weekly
from streams.catalog import CatalogError, parse_catalog
from tests.reference import RefSchedule
from tests.strategies import ZONES, weekly_ranges

GOOD: dict[str, Any] = {
    "service_times": {"business-hours": {"timezone": "Europe/Berlin",
                                         "weekly": ["Mon-Fri 08:00-18:00"],
                                         "except": ["2026-12-25", "2026-12-26"]}},
    "maintenance": [
        {"name": "mail-patching", "components": ["mail-1"], "weekly": ["Sun 02:00-04:00"],
         "timezone": "Europe/Berlin"},
        {"name": "core-switch-swap", "services": ["email"], "start": "2026-12-13T22:00:00Z",
         "end": "2026-12-14T01:00:00Z"},
    ],
    "components": {"mail-1": {}, "mail-2": {}},
    "services": {"email": {"kind": "external",
                           "sla": {"target": 0.999, "period": "month",
                                   "service_time": "business-hours"},
                           "requires": [{"any": ["mail-1", "mail-2"]}]}},
}


def test_the_contract_example_parses() -> None:
    cat = parse_catalog(copy.deepcopy(GOOD), "services.yaml")
    cal = cat.calendar("email")
    assert cal is not None and cal.service_time is not None
    assert cal.service_time.hours_per_week == 50.0
    assert {w.name for w in cal.windows} == {"mail-patching", "core-switch-swap"}
    assert cat.services["email"].period.timezone == "Europe/Berlin"


def _set(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    node: Any = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    node[int(last) if last.isdigit() else last] = value
    return data


BAD = [
    ("unknown-zone", _set("service_times.business-hours.timezone", "Europe/Berln"),
     "service_times 'business-hours': field 'timezone'"),
    ("bad-day", _set("service_times.business-hours.weekly", ["Mon-Fry 08:00-18:00"]),
     "service_times 'business-hours': field 'weekly[0]'"),
    ("bad-time", _set("service_times.business-hours.weekly", ["Mon 08:00-25:00"]),
     "service_times 'business-hours': field 'weekly[0]'"),
    ("24:00-as-a-start", _set("service_times.business-hours.weekly", ["Mon 24:00-02:00"]),
     "field 'weekly[0]'"),
    ("empty-range", _set("service_times.business-hours.weekly", ["Mon 08:00-08:00"]),
     "field 'weekly[0]'"),
    ("bad-holiday", _set("service_times.business-hours.except", ["2026-02-30"]),
     "service_times 'business-hours': field 'except[0]'"),
    ("unknown-service-time", _set("services.email.sla.service_time", "business-hour"),
     "service 'email': field 'sla.service_time'"),
    ("end-before-start", _set("maintenance.1.end", "2026-12-13T21:00:00Z"),
     "maintenance[1] 'core-switch-swap': field 'end'"),
    ("start-without-offset", _set("maintenance.1.start", "2026-12-13T22:00:00"),
     "maintenance[1] 'core-switch-swap': field 'start'"),
    ("unknown-component", _set("maintenance.0.components", ["mail-3"]),
     "maintenance[0] 'mail-patching': field 'components': unknown component 'mail-3'"),
    ("unknown-service", _set("maintenance.1.services", ["e-mail"]),
     "maintenance[1] 'core-switch-swap': field 'services': unknown service 'e-mail'"),
    ("window-zone", _set("maintenance.0.timezone", "Mars/Base"),
     "maintenance[0] 'mail-patching': field 'timezone'"),
    ("window-names-nothing", _set("maintenance.0.components", []),
     "maintenance[0] 'mail-patching': field 'components'"),
    ("window-bad-weekly", _set("maintenance.0.weekly", ["Sunday 02:00-04:00"]),
     "maintenance[0] 'mail-patching': field 'weekly[0]'"),
]


@pytest.mark.parametrize(("data", "where"), [pytest.param(d, w, id=i) for i, d, w in BAD])
def test_bad_calendars_are_refused_naming_file_entry_and_field(data: dict[str, Any],
                                                               where: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, "services.yaml")
    assert str(err.value).startswith("services.yaml: invalid catalog")
    assert any(p.startswith(where) or where in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(("text", "days", "start", "end"), [
    ("Mon 08:00-18:00", {0}, 480, 1080),
    ("Mon-Fri 08:00-18:00", {0, 1, 2, 3, 4}, 480, 1080),
    ("Mon,Wed,Fri 00:00-24:00", {0, 2, 4}, 0, 1440),
    ("Fri-Mon 22:00-06:00", {4, 5, 6, 0}, 1320, 360),
])
def test_weekly_ranges_parse(text: str, days: set[int], start: int, end: int) -> None:
    r = parse_weekly(text)
    assert (set(r.days), r.start, r.end) == (days, start, end)


def _dst_night(zone: str, year: int) -> float:
    """Some instant a day before the zone's first change of offset in ``year``."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    t = datetime(year, 1, 1, tzinfo=UTC)
    off = t.astimezone(tz).utcoffset()
    for _ in range(400):
        t += timedelta(days=1)
        if t.astimezone(tz).utcoffset() != off:
            return (t - timedelta(days=2)).timestamp()
    return datetime(year, 3, 1, tzinfo=UTC).timestamp()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(zone=st.sampled_from(ZONES), weekly=st.lists(weekly_ranges(), min_size=1, max_size=3),
       start=st.integers(0, 3 * 96), year=st.sampled_from((2024, 2026)))
def test_intervals_are_the_wall_clock_definition(zone: str, weekly: list[str], start: int,
                                                 year: int) -> None:
    """Every minute of a 4-day span around a change of offset is inside an interval
    exactly when the local clock shows a time inside a range (the reference's test)."""
    sched = WeeklySchedule(zone, tuple(parse_weekly(w) for w in weekly))
    ref = RefSchedule.parse(zone, weekly)
    a = _dst_night(zone, year) + start * 900.0
    b = a + 4 * 86400.0
    iv = sched.intervals(a, b)
    for (x, y), (x2, _) in itertools.pairwise(iv):
        assert x < y < x2  # sorted, disjoint, merged
    k = 0
    t = a
    while t < b:
        while k < len(iv) and iv[k][1] <= t:
            k += 1
        inside = k < len(iv) and iv[k][0] <= t
        assert inside == ref.inside(t), (zone, weekly, datetime.fromtimestamp(t, UTC))
        assert sched.contains(t) == inside
        t += 60.0


def test_hours_per_week_count_overlaps_once() -> None:
    sched = WeeklySchedule("UTC", (parse_weekly("Mon-Fri 08:00-18:00"),
                                   parse_weekly("Mon 17:00-19:00"),
                                   parse_weekly("Sun 22:00-02:00")))
    assert sched.hours_per_week == 50 + 1 + 4
