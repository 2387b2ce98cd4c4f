"""Service time and scheduled maintenance applied to a service's history (CONTRACT §6).

The trackers keep the step functions of §3 built from events alone: the hot loops
(Python and C) know nothing of calendars, and a catalog reload that changes a calendar
changes no stored state. The calendars are applied when numbers are read, to the
history as it stands, so a reload re-evaluates all the history kept (what was pruned
is only in the counters, as counted then).

Two step functions are derived from a tracker and its ``ServiceCalendar``:

- the **effective** one (states UP, MAINTENANCE, DOWN; tags = blamed components):
  the service's own, except inside maintenance windows, where the service is
  re-evaluated from its component copies with each listed component in maintenance
  whatever its events say (and a listed service as a maintenance node), or is in
  maintenance throughout when the window names the service itself. It gives
  `slawatch_service_up`/`_maintenance` (the state whatever the service time).
- the **accounted** one: the effective one with every second outside service time
  set to ``OUTSIDE``, which counts as neither up nor down nor planned. Every number
  of §3 is the plain §3 arithmetic over it: ``Timeline.up_down``/``totals`` count
  service-time seconds, a run of DOWN is an outage inside service time (an OUTSIDE
  piece ends it; down again at the next opening, a new run begins), and
  ``outage_counters``/``attribute``/``segments`` read it as they read any timeline.

API (stable; the period reports use it):

    OUTSIDE = 3
    accounted(tracker, cal, now, reach) -> Accounted
        .timeline   Timeline (UP, MAINTENANCE, DOWN, OUTSIDE) from .start on; read it
                    only at instants in [.start, .until) (before .start it reads UP)
        .effective  Timeline (UP, MAINTENANCE, DOWN), the same span
        tracker may be None (no event yet); reach: how far back before ``now`` it
        must be right (the longest window or the SLA period). Cached on the tracker
        while the tracker, the calendar and the span stay the same.
    pruned_counters(tracker, cal, end) -> (outages, seconds)
        the outages (DOWN runs of the accounted timeline) before ``end``, for pruning.
    component_view(history, windows, now) -> Timeline
        a component's history with its maintenance windows forced to MAINTENANCE.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streams.calendars import DAY, MaintenanceWindow, ServiceCalendar, merge
from streams.requirements import Leaf, Requirement, blame, evaluate
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import NO_TAG, Tag, Timeline

if TYPE_CHECKING:
    from streams.service import ServiceTracker

#: State code of a second outside the agreed service time (accounted timelines only).
OUTSIDE = 3

_UP, _MAINT, _DOWN = int(UP), int(MAINTENANCE), int(DOWN)
#: Prefix of the pseudo-component that stands for a service under a maintenance window.
_SERVICE_NODE = "\x00service:"
#: A built timeline reaches this much further back than asked, so the next reads
#: (``now`` moves on) find it in the cache.
_SLACK = DAY


@dataclass(slots=True)
class Accounted:
    timeline: Timeline
    effective: Timeline
    start: float
    until: float
    key: Any = None


def _fingerprint(tracker: ServiceTracker | None, cal: ServiceCalendar) -> Any:
    if tracker is None:
        return None
    tl = tracker.timeline
    comps: tuple[tuple[int, int], ...] = ()
    if cal.windows:  # the copies are read only inside windows
        comps = tuple([(len(c.ts), c._gen) for c in tracker.components.values()])
    return (len(tl.ts), tl._gen, len(tracker.components), comps)


_EMPTY: dict[int, tuple[ServiceCalendar, Accounted]] = {}


def accounted(tracker: ServiceTracker | None, cal: ServiceCalendar, now: float,
              reach: float) -> Accounted:
    """The accounted and effective timelines of the service, right on
    ``[now - reach, until)`` and over all of the tracker's history (see module doc)."""
    fp = _fingerprint(tracker, cal)
    need = now - reach
    if tracker is not None:
        cached: Accounted | None = tracker._acct
    else:
        hit = _EMPTY.get(id(cal))
        cached = hit[1] if hit is not None and hit[0] is cal else None
    if (cached is not None and cached.key == (cal, fp) and cached.start <= need
            and now < cached.until):
        return cached
    raw_first = tracker.timeline.ts[0] if tracker is not None and tracker.timeline.ts else math.inf
    start = min(need - _SLACK, raw_first)
    until = cal.next_change(now)
    acc = _build(tracker, cal, start, until)
    acc.key = (cal, fp)
    if tracker is not None:
        tracker._acct = acc
    else:
        if len(_EMPTY) > 4096:
            _EMPTY.clear()
        _EMPTY[id(cal)] = (cal, acc)
    return acc


class _Points:
    """Points of a step function being written in time order, redundant ones merged."""

    __slots__ = ("st", "tag", "ts")

    def __init__(self) -> None:
        self.ts: list[float] = []
        self.st: list[int] = []
        self.tag: list[Tag] = []

    def put(self, t: float, s: int, g: Tag) -> None:
        ts, st, tag = self.ts, self.st, self.tag
        if ts:
            if st[-1] == s and tag[-1] == g:
                return
            if ts[-1] == t:
                if len(ts) > 1 and st[-2] == s and tag[-2] == g:
                    del ts[-1], st[-1], tag[-1]
                else:
                    st[-1], tag[-1] = s, g
                return
        ts.append(t)
        st.append(s)
        tag.append(g)

    def timeline(self) -> Timeline:
        return Timeline(self.ts, self.st, self.tag)


def _forced_state(cal: ServiceCalendar, comps: Mapping[str, Timeline], t: float,
                  forced_c: frozenset[str], forced_s: frozenset[str]) -> tuple[int, Tag]:
    """The service's state and blame at ``t`` with the forced sets in maintenance."""
    states: dict[str, State] = {}
    for c in cal.components:
        tl = comps.get(c)
        states[c] = MAINTENANCE if c in forced_c else (tl.state_at(t) if tl is not None else UP)
    for s in forced_s:
        states[_SERVICE_NODE + s] = MAINTENANCE
    base = cal.resolve

    def resolve(name: str) -> Requirement:
        if name in forced_s:
            return Leaf(_SERVICE_NODE + name)
        return base(name)

    req = cal.requires
    if not evaluate(req, states, resolve, planned=False):
        return _DOWN, blame(req, states, resolve)
    if not evaluate(req, states, resolve, planned=True):
        return _MAINT, NO_TAG
    return _UP, NO_TAG


def _build(tracker: ServiceTracker | None, cal: ServiceCalendar, lo: float, hi: float) -> Accounted:
    raw = tracker.timeline if tracker is not None else Timeline()
    comps: Mapping[str, Timeline] = tracker.components if tracker is not None else {}
    raw_first = raw.ts[0] if raw.ts else math.inf
    eff = _Points()
    cur = lo
    for x, y, forced_c, forced_s in cal.maintenance_pieces(lo, hi):
        for a, _, s, g in raw.segments(cur, x):
            eff.put(a, s, g)
        if cal.name in forced_s:
            eff.put(x, _MAINT, NO_TAG)
        else:
            times = {x}
            for c in cal.components:
                tl = comps.get(c)
                if tl is not None:
                    times.update(tl.points_between(x, y))
            for t in sorted(times):
                s, g = _forced_state(cal, comps, t, forced_c, forced_s)
                if s == _DOWN and t < raw_first:
                    # Up before the service's first point (no news, or history pruned
                    # and counted): a forced component cannot make it down there; the
                    # copies may have been pruned and read up where they were not.
                    s, g = _UP, NO_TAG
                eff.put(t, s, g)
        cur = y
    for a, _, s, g in raw.segments(cur, hi):
        eff.put(a, s, g)
    if not eff.ts:
        eff.put(lo, _UP, NO_TAG)
    effective = eff.timeline()
    if cal.service_time is None:
        return Accounted(effective, effective, lo, hi)
    iv = cal.service_time.intervals(lo, hi)
    starts = [a for a, _ in iv]
    cuts = sorted({*effective.ts, *(x for pair in iv for x in pair)})
    acc = _Points()
    for t in cuts:
        if t >= hi:
            break
        k = bisect_right(starts, t) - 1
        if k >= 0 and t < iv[k][1]:
            s, g = effective.point_at(t)
            acc.put(t, int(s), g)
        else:
            acc.put(t, OUTSIDE, NO_TAG)
    return Accounted(acc.timeline(), effective, lo, hi)


def pruned_counters(tracker: ServiceTracker, cal: ServiceCalendar, end: float) -> tuple[int, float]:
    """(outages, down seconds) of the accounted timeline before ``end``: what pruning
    the tracker's history before ``end`` takes out of its counters."""
    raw = tracker.timeline
    if not raw.ts or raw.ts[0] >= end:
        return 0, 0.0
    acc = _build(tracker, cal, raw.ts[0], end)
    count, seconds, prev = 0, 0.0, -1
    for a, b, s, _ in acc.timeline.segments(raw.ts[0], end):
        if s == _DOWN:
            if prev != _DOWN:
                count += 1
            seconds += b - a
        prev = s
    return count, seconds


def forced_windows(windows: Iterable[MaintenanceWindow], a: float, b: float) -> list[tuple[float, float]]:
    return merge(iv for w in windows for iv in w.intervals(a, b))


def component_view(history: Timeline, windows: tuple[MaintenanceWindow, ...], now: float,
                   reach: float) -> Timeline:
    """``history`` with MAINTENANCE wherever one of ``windows`` is open, right on
    ``[now - reach, now]`` (the component's own state elsewhere)."""
    lo = min(now - reach - _SLACK, history.ts[0] if history.ts else math.inf)
    hi = now + 1.0
    out = _Points()
    cur = lo
    for x, y in forced_windows(windows, lo, hi):
        for a, _, s, g in history.segments(cur, x):
            out.put(a, s, g)
        out.put(x, _MAINT, NO_TAG)
        cur = y
    for a, _, s, g in history.segments(cur, hi):
        out.put(a, s, g)
    return out.timeline()
