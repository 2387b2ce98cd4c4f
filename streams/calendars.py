"""Agreed service time and scheduled maintenance (CONTRACT §6): pure calendars.

A calendar answers one question exactly, for any instants ``a < b`` (epoch seconds):
which intervals of ``[a, b)`` does it cover. No clock is read here.

The meaning of a weekly range is the local wall clock: a second is inside
``Mon-Fri 08:00-18:00`` (zone Europe/Berlin) when a clock in Berlin shows, at that
second, a time from 08:00 to 18:00 on a Monday to Friday (``22:00-06:00`` runs into
the next local day; ``24:00`` is the end of the day; an ``except`` date is a whole
local day left out). So DST needs no special rule: on a spring-forward night a local
02:00-04:00 lasts one hour (the clock jumps from 02:00 to 03:00), on a fall-back night
three. A range whose start the clock skips begins when the clock jumps past it.

API (stable; ``streams.accounting`` and the period reports build on it):

    parse_weekly(text) -> WeeklyRange            "Mon-Fri 08:00-18:00", "Sat,Sun 22:00-24:00"
    WeeklySchedule(zone, ranges, except_days)
        .contains(t) -> bool                     is the second starting at t inside
        .intervals(a, b) -> list[(start, end)]   sorted, disjoint, merged, clipped to [a, b)
        .next_change(t) -> float                 first boundary after t (inf if none in 8 days)
        .hours_per_week -> float                 nominal agreed hours (no DST, no exceptions)
        .describe() -> str                       "Mon-Fri 08:00-18:00 Europe/Berlin"
    ServiceTime(name, schedule)                  a named calendar of `service_times:`
    MaintenanceWindow(name, components, services, schedule | None, start, end)
        .intervals(a, b)                         its open intervals in [a, b)
    merge(intervals) -> list[(start, end)]       union of (start, end) pairs
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.requirements import Requirement, Resolver

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {d.lower(): i for i, d in enumerate(DAY_NAMES)}
_WEEKLY = re.compile(r"^\s*(?P<days>[A-Za-z][A-Za-z,\-\s]*?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*"
                     r"(?P<end>\d{1,2}:\d{2})\s*$")
DAY = 86400


class CalendarError(ValueError):
    """A calendar field that cannot be used; the text says which part and why."""


def zone(name: object) -> ZoneInfo:
    """The IANA zone ``name``; CalendarError when there is none such."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise CalendarError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)")
    return _zone(name)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(f"unknown time zone {name!r} (expected an IANA name such as "
                            "Europe/Berlin or UTC)") from None


def _minutes(text: str, *, end: bool) -> int:
    hh, mm = text.split(":")
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and m != 0) or (h == 24 and not end):
        raise CalendarError(f"{text!r} is not a time of day (00:00-23:59, or 24:00 as an end)")
    return h * 60 + m


def _days(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            raise CalendarError(f"{text!r}: an empty day in the list")
        ends = part.split("-")
        if len(ends) > 2 or any(e.lower() not in _DAY_INDEX for e in ends):
            raise CalendarError(f"{part!r} is not a day or a range of days "
                                "(Mon Tue Wed Thu Fri Sat Sun, e.g. Mon-Fri or Mon,Wed,Fri)")
        lo, hi = _DAY_INDEX[ends[0].lower()], _DAY_INDEX[ends[-1].lower()]
        # Fri-Mon wraps over the weekend, as a person reading it means.
        out.update((lo + k) % 7 for k in range((hi - lo) % 7 + 1))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class WeeklyRange:
    """Days of the week and a local time range; ``end <= start`` runs into the next day."""

    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after local midnight
    end: int  # minutes after local midnight, 1440 for 24:00
    text: str = field(compare=False, default="")

    @property
    def overnight(self) -> bool:
        return self.end <= self.start

    def minutes(self) -> Iterable[int]:
        """The minutes of the week (0 = Monday 00:00) it covers, nominally."""
        length = (self.end - self.start) % 1440 or 1440
        for d in self.days:
            base = d * 1440 + self.start
            for k in range(length):
                yield (base + k) % (7 * 1440)


def parse_weekly(text: object) -> WeeklyRange:
    """``"Mon-Fri 08:00-18:00"``; raises CalendarError naming what is wrong."""
    if not isinstance(text, str):
        raise CalendarError(f"{text!r} must be a string like \"Mon-Fri 08:00-18:00\"")
    m = _WEEKLY.match(text)
    if m is None:
        raise CalendarError(f"{text!r} is not \"Days HH:MM-HH:MM\" (e.g. \"Mon-Fri 08:00-18:00\")")
    days = _days(m.group("days"))
    start = _minutes(m.group("start"), end=False)
    end = _minutes(m.group("end"), end=True)
    if start == end:
        raise CalendarError(f"{text!r}: the range is empty (start equals end; "
                            "00:00-24:00 is a whole day)")
    return WeeklyRange(days, start, end, text.strip())


def parse_date(text: object) -> date:
    if isinstance(text, date) and not isinstance(text, datetime):
        return text  # YAML reads an unquoted 2026-12-25 as a date
    if not isinstance(text, str):
        raise CalendarError(f"{text!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise CalendarError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_instant(text: object) -> float:
    """RFC 3339 with an offset (``2026-12-13T22:00:00Z``) -> epoch seconds."""
    if isinstance(text, datetime):
        if text.tzinfo is None:
            raise CalendarError(f"{text.isoformat()!r} has no UTC offset (add Z or +01:00)")
        return text.timestamp()
    if not isinstance(text, str):
        raise CalendarError(f"{text!r} is not an RFC 3339 time (e.g. 2026-12-13T22:00:00Z)")
    s = text.strip()
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise CalendarError(f"{text!r} is not an RFC 3339 time (e.g. 2026-12-13T22:00:00Z)") from None
    if dt.tzinfo is None or ("T" not in s.upper() and " " not in s):
        raise CalendarError(f"{text!r} needs a date, a time and a UTC offset "
                            "(e.g. 2026-12-13T22:00:00Z)")
    return dt.timestamp()


def format_instant(t: float) -> str:
    """Epoch seconds as RFC 3339 in UTC (``2026-12-13T22:00:00Z``), whole seconds."""
    return datetime.fromtimestamp(math.floor(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``(start, end)`` pairs as sorted, disjoint, non-touching pairs."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def clip(intervals: Sequence[tuple[float, float]], a: float, b: float) -> list[tuple[float, float]]:
    return [(max(x, a), min(y, b)) for x, y in intervals if y > a and x < b]


@lru_cache(maxsize=4096)
def _transitions(zone_name: str, day0: int) -> tuple[int, ...]:
    """Instants in [day0*DAY, (day0+1)*DAY] where the zone's UTC offset changes."""
    tz = zone(zone_name)
    lo, hi = day0 * DAY, (day0 + 1) * DAY

    def off(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, tz).utcoffset()

    if off(lo) == off(hi):
        mid = off(lo + DAY // 2)
        if mid == off(lo):
            return ()
        return (*_bisect_change(off, lo, lo + DAY // 2), *_bisect_change(off, lo + DAY // 2, hi))
    return _bisect_change(off, lo, hi)


def _bisect_change(off: object, lo: int, hi: int) -> tuple[int, ...]:
    f = off  # callable: t -> offset
    a, b = f(lo), f(hi)  # type: ignore[operator]
    if a == b:
        return ()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid) == a:  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return (hi,)


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """Weekly local ranges in a zone, less whole local days (``except_days``)."""

    zone: str
    ranges: tuple[WeeklyRange, ...]
    except_days: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        zone(self.zone)  # refuses an unknown one here, once

    # -- the definition ---------------------------------------------------------------

    def contains(self, t: float) -> bool:
        """Whether the local clock at ``t`` shows a time inside the schedule."""
        local = datetime.fromtimestamp(t, zone(self.zone))
        d = local.date()
        if d in self.except_days:
            return False
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60.0
        wd = d.weekday()
        for r in self.ranges:
            if r.overnight:
                if (wd in r.days and minute >= r.start) or ((wd - 1) % 7 in r.days and minute < r.end):
                    return True
            elif wd in r.days and r.start <= minute < r.end:
                return True
        return False

    # -- intervals ----------------------------------------------------------------------

    def _candidates(self, a: float, b: float) -> list[float]:
        """Every instant in (a, b) where ``contains`` may change: each local range edge
        and midnight, read with both folds, and every change of the zone's offset."""
        tz = zone(self.zone)
        first = datetime.fromtimestamp(a, tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(b, tz).date() + timedelta(days=1)
        edges = sorted({0, *(r.start for r in self.ranges), *(r.end % 1440 for r in self.ranges)})
        out: set[float] = set()
        d = first
        while d <= last:
            for mnt in edges:
                h, m = divmod(mnt, 60)
                for fold in (0, 1):
                    t = datetime.combine(d, time(h, m, fold=fold), tz).timestamp()
                    if a < t < b:
                        out.add(t)
            d += timedelta(days=1)
        for day0 in range(math.floor(a / DAY), math.floor(b / DAY) + 1):
            out.update(t for t in _transitions(self.zone, day0) if a < t < b)
        return sorted(out)

    def intervals(self, a: float, b: float) -> list[tuple[float, float]]:
        """The parts of ``[a, b)`` inside the schedule: sorted, disjoint, merged.

        Computed for whole UTC days and remembered (reports ask for nearly the same
        span at every scrape), then clipped; the same intervals either way.
        """
        if not b > a:
            return []
        d0, d1 = math.floor(a / DAY), math.ceil(b / DAY)
        if d1 - d0 > 64:  # an unusual span: not worth remembering
            return self._intervals(a, b)
        return clip(_day_intervals(self, d0, d1), a, b)

    def _intervals(self, a: float, b: float) -> list[tuple[float, float]]:
        cuts = [a, *self._candidates(a, b), b]
        out: list[tuple[float, float]] = []
        for x, y in itertools.pairwise(cuts):
            if self.contains(x):
                if out and out[-1][1] == x:
                    out[-1] = (out[-1][0], y)
                else:
                    out.append((x, y))
        return out

    def next_change(self, t: float) -> float:
        """The first instant after ``t`` where ``contains`` changes (inf: none within 8 days)."""
        inside = self.contains(t)
        for x, y in self.intervals(t, t + 8 * DAY):
            if x > t and not inside:
                return x
            if inside and x == t:
                return y if y < t + 8 * DAY else math.inf
            if x > t:
                return x
        return math.inf

    @property
    def hours_per_week(self) -> float:
        """Agreed hours in a week, as written (a DST week or an exception day aside)."""
        return _hours_per_week(self.ranges)

    def describe(self) -> str:
        text = "; ".join(r.text for r in self.ranges)
        if self.except_days:
            text += f" except {len(self.except_days)} day(s)"
        return f"{text} ({self.zone})"


@lru_cache(maxsize=1024)
def _day_intervals(schedule: WeeklySchedule, d0: int, d1: int) -> list[tuple[float, float]]:
    """``schedule._intervals`` over the UTC days ``d0`` to ``d1`` (never mutated)."""
    return schedule._intervals(d0 * DAY, d1 * DAY)


@lru_cache(maxsize=1024)
def _hours_per_week(ranges: tuple[WeeklyRange, ...]) -> float:
    covered: set[int] = set()
    for r in ranges:
        covered.update(r.minutes())
    return len(covered) / 60.0


@dataclass(frozen=True, slots=True)
class ServiceTime:
    """A named calendar of agreed service time (``service_times:``)."""

    name: str
    schedule: WeeklySchedule

    @property
    def zone(self) -> str:
        return self.schedule.zone

    def intervals(self, a: float, b: float) -> list[tuple[float, float]]:
        return self.schedule.intervals(a, b)

    def contains(self, t: float) -> bool:
        return self.schedule.contains(t)

    @property
    def hours_per_week(self) -> float:
        return self.schedule.hours_per_week


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """One entry of ``maintenance:``: weekly in a zone, or one-off ``[start, end)``."""

    name: str
    components: frozenset[str]
    services: frozenset[str]
    schedule: WeeklySchedule | None = None
    start: float | None = None
    end: float | None = None

    def intervals(self, a: float, b: float) -> list[tuple[float, float]]:
        if self.schedule is not None:
            return self.schedule.intervals(a, b)
        assert self.start is not None and self.end is not None
        s, e = max(self.start, a), min(self.end, b)
        return [(s, e)] if e > s else []

    def contains(self, t: float) -> bool:
        if self.schedule is not None:
            return self.schedule.contains(t)
        assert self.start is not None and self.end is not None
        return self.start <= t < self.end

    def describe(self) -> str:
        if self.schedule is not None:
            return self.schedule.describe()
        assert self.start is not None and self.end is not None
        return f"{format_instant(self.start)} - {format_instant(self.end)}"


@dataclass(frozen=True, slots=True, eq=False)
class ServiceCalendar:
    """Everything of §6 that applies to one service, from its catalog.

    ``windows`` are the maintenance windows that touch it: naming the service, a
    service it requires through ``service:`` (``services``), or one of its components.
    ``requires``/``resolve`` evaluate its requirements with forced states (a window's
    components in maintenance, a window's services as maintenance nodes).
    """

    name: str
    service_time: ServiceTime | None
    windows: tuple[MaintenanceWindow, ...]
    requires: Requirement
    resolve: Resolver
    components: frozenset[str]
    services: frozenset[str]  # the service itself and every service it requires

    @property
    def zone(self) -> str | None:
        return None if self.service_time is None else self.service_time.zone

    def in_service_time(self, t: float) -> bool:
        return self.service_time is None or self.service_time.contains(t)

    def service_time_intervals(self, a: float, b: float) -> list[tuple[float, float]]:
        if self.service_time is None:
            return [(a, b)] if b > a else []
        return self.service_time.intervals(a, b)

    def scheduled_maintenance(self, t: float) -> bool:
        """`slawatch_service_scheduled_maintenance`: a window touching it is open at t."""
        return any(w.contains(t) for w in self.windows)

    def maintenance_pieces(self, a: float, b: float
                           ) -> list[tuple[float, float, frozenset[str], frozenset[str]]]:
        """``[a, b)`` cut where the forced sets change: the pieces where some window is
        open, each with the (components, services) forced into maintenance there."""
        spans = [(w, w.intervals(a, b)) for w in self.windows]
        cuts = sorted({x for _, iv in spans for pair in iv for x in pair})
        out: list[tuple[float, float, frozenset[str], frozenset[str]]] = []
        for x, y in itertools.pairwise(cuts):
            comps: set[str] = set()
            svcs: set[str] = set()
            for w, iv in spans:
                if any(s <= x < e for s, e in iv):
                    comps |= w.components & self.components
                    svcs |= w.services & self.services
            if comps or svcs:
                if out and out[-1][1] == x and out[-1][2] == comps and out[-1][3] == svcs:
                    out[-1] = (out[-1][0], y, out[-1][2], out[-1][3])
                else:
                    out.append((x, y, frozenset(comps), frozenset(svcs)))
        return out

    def next_change(self, t: float, horizon: float = DAY) -> float:
        """The first instant in (t, t + horizon) where service time or a window opens or
        closes; ``t + horizon`` when none does."""
        end = t + horizon
        best = end
        for iv in ([] if self.service_time is None else self.service_time.intervals(t, end),
                   *(w.intervals(t, end) for w in self.windows)):
            for x, y in iv:
                for p in (x, y):
                    if t < p < best:
                        best = p
        return best
