"""Keeping the day rollups of ``periods`` up to date from the service trackers.

A service is marked dirty with the earliest instant a batch may have changed its step
function (the earliest segment start); at a checkpoint the book recomputes the local
days from there to the tracker's frontier, from the tracker's timeline (a day that
nothing changed before its covered part is only extended), and stores the days that
changed. The hot path pays one ``min`` per service and batch.

Pruning must not take history a day rollup may still need: ``prune_cut`` holds the cut
back to 32 days behind the service's newest change (in live processing the engine's
own cut, the clock less 32 days, is earlier, so nothing changes; in a backfill of old
events the service keeps as much history as live, and input partitions may run that
far apart in event time), and the tracker remembers it (``whole_from``): days before it
are never recomputed (a change there is counted in ``dropped``).

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

from streams import record
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
#: How far behind its newest change a service's history is kept at least: the
#: engine's retention, so a backfill holds no more than live processing does.
KEEP = 32 * DAY


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
    """A day with runs as a checkpoint record (``streams/record.py``: its runs' columns
    as bytes, 20 a run against 27 in base64 in JSON: the running day of a flapping
    service is the largest value a storm keeps); the rest as JSON."""
    if isinstance(value, DayRollup) and value.runs:
        out = record.Packer()
        return out.encode(value.to_obj(out))
    return orjson.dumps(value.to_obj())


def decode(raw: bytes) -> Stored:
    """What ``encode`` wrote, or the JSON of an older release."""
    if record.is_record(raw):
        head, body = record.decode(raw, "day rollup")
        return DayRollup.from_obj(str(head["day"]), head, body)
    obj = orjson.loads(raw)
    if "meta" in obj:
        return RollupMeta.from_obj(obj)
    if "day" in obj:
        return DayRollup.from_obj(obj["day"], obj)
    return MonthRollup.from_obj(obj)


class RollupStore(Protocol):
    def get(self, key: str) -> Stored | None: ...

    def put(self, service: str, key: str, value: Stored) -> None: ...


class RollupBook:
    """Dirty marks and the recomputation of day rollups over a ``RollupStore``."""

    def __init__(self, store: RollupStore, accounting: Callable[[str], Accounting],
                 info: Callable[[str], ServiceInfo | None]) -> None:
        self.store = store
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
        until = frontier  # no point of the tracker is later: the tail holds after it
        if not math.isfinite(lo) or not math.isfinite(until) or lo > until:
            return 0  # nothing changed at or after lo (a change moves the frontier there)
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
                r = day_rollup(acc, view, tracker, d, until, old, dirty)
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

        Held back to ``KEEP`` behind the tracker's frontier, its newest change: in live
        processing the engine's own cut (the clock less the retention) is the earlier
        one and nothing changes; in a backfill of old events the service keeps the same
        span of history behind its newest change, so a segment from an input partition
        that runs behind in event time (another worker's, or one started later) still
        lands in days that can be recomputed whole.
        """
        meta = self.meta(service)
        zone = self.accounting(service).zone
        frontier = getattr(tracker, "frontier", -math.inf)
        newest = frontier if math.isfinite(frontier) else meta.covered
        if math.isfinite(newest):
            cut = min(cut, newest - KEEP)
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
