"""Keeping the day rollups of ``periods`` up to date from the service trackers.

A service is marked dirty with the earliest instant a batch may have changed its step
function (the earliest segment start); at a checkpoint the book recomputes the local
days from there to the tracker's frontier, from the tracker's timeline (a day that
nothing changed before its covered part is only extended), and stores the days that
changed. The hot path pays one ``min`` per service and batch.

Pruning must not take history a day rollup may still need: ``prune_cut`` holds the cut
back a week behind the frontier, and further to where the slowest component's next
segment may land (its last change less the allowed lateness) up to ``MAX_LAG`` (in
live processing all of that is later than the engine's own cut, so nothing changes; in
a backfill of old events it keeps a week or so), and the tracker remembers it
(``whole_from``): days before it are never recomputed (a change there is counted in
``dropped``).

Storage is a small mapping interface (``RollupStore``): a dict in the tests, a Faust
table with a changelog in the worker. One record per service and day, so a write costs
a day's size however long the month: ``service`` holds its ``RollupMeta``,
``"{service}\\x1e{YYYY-MM-DD}"`` a ``DayRollup``, ``"{service}\\x1e{YYYY-MM}"`` the month's
``MonthRollup`` (revisions, the catalog at its end).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from streams.periods import (
    Accounting,
    DayRollup,
    History,
    MonthRollup,
    PeriodReport,
    ServiceInfo,
    day_bounds,
    day_of,
    day_rollup,
    days_between,
    extend_rollup,
    is_revision,
    month_end_of,
    period_report,
)

SEP = "\x1e"
DAY = 86400.0
#: How far behind its newest change a service's history is always kept: a backfill's
#: input partitions (on several workers, started at different times) run apart in event
#: time, and a component's first segment can come from one that is behind.
MIN_KEEP = 7 * DAY
#: ... and at most, for a component whose last change is further back (it may still
#: send segments back to there, less the allowed lateness).
MAX_LAG = 32 * DAY


def month_key(service: str, period: str) -> str:
    return f"{service}{SEP}{period}"


def day_key(service: str, day: str) -> str:
    return f"{service}{SEP}{day}"


@dataclass(slots=True)
class RollupMeta:
    """Per service: what the rollups cover and the earliest instant they can still redo."""

    service: str
    horizon: float = -math.inf  # days before this midnight are never recomputed
    covered: float = -math.inf  # the newest instant any day rollup covers
    first: str | None = None  # the first day with a rollup (ISO date)

    def to_obj(self) -> dict[str, Any]:
        return {"meta": self.service, "horizon": None if self.horizon == -math.inf else self.horizon,
                "covered": None if self.covered == -math.inf else self.covered,
                "first": self.first}

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> RollupMeta:
        h, c = obj.get("horizon"), obj.get("covered")
        return cls(str(obj["meta"]), -math.inf if h is None else float(h),
                   -math.inf if c is None else float(c), obj.get("first"))


Stored = RollupMeta | MonthRollup | DayRollup


def encode(value: Stored) -> bytes:
    return orjson.dumps(value.to_obj())


def decode(raw: bytes) -> Stored:
    obj = orjson.loads(raw)
    if "meta" in obj:
        return RollupMeta.from_obj(obj)
    if "day" in obj:
        return DayRollup.from_obj(obj["day"], obj)
    return MonthRollup.from_obj(obj)


class RollupStore(Protocol):
    def get(self, key: str) -> Stored | None: ...

    def put(self, service: str, key: str, value: Stored) -> None: ...


class DictStore:
    """A ``RollupStore`` in memory (tests)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> Stored | None:
        raw = self.data.get(key)
        return None if raw is None else decode(raw)

    def put(self, service: str, key: str, value: Stored) -> None:
        self.data[key] = encode(value)  # stored as bytes: what survives is what is read


class RollupBook:
    """Dirty marks and the recomputation of day rollups over a ``RollupStore``."""

    def __init__(self, store: RollupStore, accounting: Callable[[str], Accounting],
                 info: Callable[[str], ServiceInfo | None], lateness: float = 600.0) -> None:
        self.store = store
        self.lateness = lateness  # the worker's allowed lateness (bounds late segments)
        self.accounting = accounting
        self.info = info
        self.dirty: dict[str, float] = {}  # service -> earliest instant that may have changed
        self.dropped = 0  # changes before a service's horizon (not in any rollup)

    def mark(self, service: str, start: float) -> None:
        old = self.dirty.get(service)
        if old is None or start < old:
            self.dirty[service] = start

    def meta(self, service: str) -> RollupMeta:
        got = self.store.get(service)
        return got if isinstance(got, RollupMeta) else RollupMeta(service)

    def month(self, service: str, period: str, zone: str) -> MonthRollup:
        got = self.store.get(month_key(service, period))
        return got if isinstance(got, MonthRollup) else MonthRollup(service, period, zone)

    def day(self, service: str, day: str) -> DayRollup | None:
        got = self.store.get(day_key(service, day))
        return got if isinstance(got, DayRollup) else None

    def update(self, service: str, tracker: Any, frontier: float, now: float) -> int:
        """Recompute the service's dirty days; returns how many days changed."""
        dirty = self.dirty.pop(service, None)
        if dirty is None:
            return 0
        acc = self.accounting(service)
        zone = acc.zone
        meta = self.meta(service)
        # Only days the tracker still holds whole (``whole_from``: its last prune's cut).
        horizon = max(meta.horizon, getattr(tracker, "whole_from", -math.inf))
        lo = max(dirty, horizon)
        if dirty < horizon:
            self.dropped += 1
        until = max(frontier, lo)
        if not math.isfinite(lo) or not math.isfinite(until):
            return 0
        info = self.info(service)
        snapshot = info.to_obj() if info is not None else None
        days = [d for d in days_between(lo, until, zone) if day_bounds(d, zone)[0] >= horizon]
        if not days:
            return 0
        view = acc.view(tracker, day_bounds(days[0], zone)[0], day_bounds(days[-1], zone)[1])
        months: dict[str, MonthRollup] = {}
        n = 0
        for d in days:
            key = d.isoformat()
            old = self.day(service, key)
            if old is not None and dirty >= old.covered:  # only after what it covers
                r = extend_rollup(acc, old, view, tracker, until)
            else:
                r = day_rollup(acc, view, tracker, d, until)
            if old is not None and old == r:
                continue
            n += 1
            self.store.put(service, day_key(service, key), r)
            period = key[:7]
            revised = is_revision(old, r, acc, dirty_from=dirty, known=meta.covered, now=now)
            running = snapshot is not None and now < month_end_of(key, zone)
            if revised or running:
                month = months.get(period) or self.month(service, period, zone)
                changed = revised
                if revised:
                    month.revision += 1
                    month.revised_at = now
                if running and month.catalog != snapshot:
                    month.catalog = dict(snapshot or {})
                    changed = True
                if changed:
                    months[period] = month
            if meta.first is None or key < meta.first:
                meta.first = key
        for period, month in sorted(months.items()):
            self.store.put(service, month_key(service, period), month)
        if n:
            meta.covered = max(meta.covered, until)
            self.store.put(service, service, meta)
        return n

    def prune_cut(self, service: str, cut: float, tracker: Any = None) -> float:
        """The cut the service's history may be pruned at (at most ``cut``), a midnight,
        remembered as the service's horizon.

        Held back so that every day a segment may still come for can be recomputed
        whole: ``MIN_KEEP`` behind the tracker's frontier always (a backfill's input
        partitions run apart in event time, and a component's first segment is not
        bounded by anything), and further for a component whose last change is older:
        its segments start no earlier than its newest event less the allowed lateness,
        so no earlier than its copy's last point less that; but no more than
        ``MAX_LAG`` (a component quiet for months must not keep the rest's history). In
        live processing all of that is later than the engine's own cut.
        """
        meta = self.meta(service)
        zone = self.accounting(service).zone
        frontier = getattr(tracker, "frontier", -math.inf)
        if math.isfinite(frontier):
            lasts = [tl.ts[-1] for tl in tracker.components.values() if tl.ts]
            slowest = min(lasts, default=frontier) - self.lateness
            cut = min(cut, frontier - MIN_KEEP, max(slowest, frontier - MAX_LAG))
        elif math.isfinite(meta.covered):
            cut = min(cut, meta.covered - MIN_KEEP)
        cut = day_bounds(day_of(cut, zone), zone)[0]  # a midnight: days are whole after it
        if cut > meta.horizon:
            meta.horizon = cut
            self.store.put(service, service, meta)
        return cut

    # -- reading ----------------------------------------------------------------------

    def history(self, service: str, until: float) -> History:
        meta = self.meta(service)
        return History(self.accounting(service), lambda day: self.day(service, day), meta.first,
                       until)

    def report(self, service: str, period: str, now: float) -> PeriodReport | None:
        info = self.info(service)
        if info is None:
            return None
        got = self.store.get(month_key(service, period))
        month = got if isinstance(got, MonthRollup) else None
        return period_report(info, period, self.history(service, now), month=month)


def reports(book: RollupBook, services: Iterable[str], period: str, now: float) -> list[PeriodReport]:
    out = []
    for name in services:
        r = book.report(name, period, now)
        if r is not None:
            out.append(r)
    return out
