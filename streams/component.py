"""Per-component history: classification of events and the component's step function.

Every applied event within ``allowed_lateness`` of the newest one is kept as a point,
even one that repeats the current state: a late event may land between two such
repeats and turn the later one into a real change, and sorted arrival must give the
same result as any order within the lateness. Older points that change nothing are
compacted away, so memory is bounded by the state changes kept, not by the events.

What crosses to the services is a ``Segment``: "on [start, end) this component is now
in this state". Applying a segment is an overwrite, so re-applying one (after a crash
and redelivery) is harmless, and heartbeats that change nothing produce no segment.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from typing import Any, Literal, NamedTuple

import orjson

from streams import native
from streams.events import ComponentEvent
from streams.record import MAGIC, Packer, join
from streams.states import UP, State
from streams.timeline import Timeline, float_column, new_timeline, state_column

Outcome = Literal["accepted", "duplicate", "late", "unmapped", "invalid"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "invalid", "duplicate", "late", "unmapped")

#: Compact the history after this many points were added since the last compaction.
_COMPACT_EVERY = 64

_INF = math.inf
_BIG = sys.byteorder == "big"  # columns are stored little-endian (streams/record.py)


class Segment(NamedTuple):
    """Immutable; a NamedTuple because it is built once per state change on the hot path
    (a frozen dataclass costs four ``object.__setattr__`` calls per instance)."""

    component: str
    start: float
    end: float  # math.inf: open-ended
    state: State

    def to_obj(self) -> list[Any]:
        return [self.component, self.start, None if self.end == math.inf else self.end, int(self.state)]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Segment:
        return cls(obj[0], float(obj[1]), math.inf if obj[2] is None else float(obj[2]), State(obj[3]))


_ACCEPTED_NO_CHANGE: tuple[Outcome, Segment | None] = ("accepted", None)


def _compact_keep(times: array[float], states: array[int], start: int, cut: int
                  ) -> tuple[list[float], list[int]] | None:
    """The points of ``[start, cut)`` a compaction keeps, as (times, states); None when it
    keeps them all (``_native.compact_keep``'s twin). A point is kept if it is the last
    at its ts and changes the state from the previous kept one (UP before the first)."""
    keep_t: list[float] = []
    keep_s: list[int] = []
    prev = states[start - 1] if start > 0 else int(UP)
    n = len(times)
    for i in range(start, cut):
        if i + 1 < n and times[i + 1] == times[i]:
            continue
        if states[i] != prev:
            keep_t.append(times[i])
            keep_s.append(states[i])
            prev = states[i]
    return None if len(keep_t) == cut - start else (keep_t, keep_s)


class ComponentTracker:
    __slots__ = ("_clean", "_since_compact", "component", "history", "newest")

    def __init__(self, component: str) -> None:
        self.component = component
        # Points sorted by (ts, state); at equal ts the most severe comes last and wins.
        self.history = new_timeline()
        self.newest = -math.inf
        self._since_compact = 0
        self._clean = 0  # points before this index are known to be compact
        fast = native.native
        if fast is not None:
            fast.untrack(self)  # no reference cycle passes here (see Timeline.__init__)

    def apply(self, event: ComponentEvent, allowed_lateness: float) -> tuple[Outcome, Segment | None]:
        ts = event.ts
        if ts > self.newest:
            # In-order fast path: appended after every point (_added inlined).
            h = self.history
            states = h.st
            state = event.state
            old = states[-1] if states else UP
            h.ts.append(ts)
            states.append(state)
            h.tag.append(0)  # NO_TAG
            self.newest = ts
            n = self._since_compact + 1
            if n >= _COMPACT_EVERY:
                self._since_compact = 0
                self.compact(ts - allowed_lateness)
            else:
                self._since_compact = n
            if old == state:
                return _ACCEPTED_NO_CHANGE
            return "accepted", Segment(self.component, ts, _INF, state)
        st = int(event.state)
        h = self.history
        times, states = h.ts, h.st
        if ts < self.newest - allowed_lateness:
            return "late", None
        lo = bisect_left(times, ts)
        hi = bisect_right(times, ts, lo)
        if st in states[lo:hi]:
            return "duplicate", None
        old = states[hi - 1] if hi > 0 else UP
        pos = lo
        while pos < hi and states[pos] < st:
            pos += 1
        times.insert(pos, ts)
        states.insert(pos, st)
        h.tag.insert(pos, 0)
        h._touched(pos)
        new = states[hi]  # the last point at ts, after the insertion
        segment = None
        if new != old:
            end = times[hi + 1] if hi + 1 < len(times) else math.inf
            segment = Segment(self.component, ts, end, State(new))
        self._added(allowed_lateness)  # may compact, which moves indexes: keep it last
        return "accepted", segment

    def segment_at(self, ts: float) -> Segment:
        """The current truth about the instant ``ts``, to re-send after a redelivery."""
        h = self.history
        return Segment(self.component, ts, h.next_after(ts), h.state_at(ts))

    @property
    def state(self) -> State:
        return self.history.last_state

    def state_at(self, t: float) -> State:
        return self.history.state_at(t)

    def _added(self, allowed_lateness: float) -> None:
        self._since_compact += 1
        if self._since_compact >= _COMPACT_EVERY:
            self._since_compact = 0
            self.compact(self.newest - allowed_lateness)

    def compact(self, horizon: float) -> None:
        """Drop points before ``horizon`` that do not change the step function.

        Only points outside the lateness window (``newest - allowed_lateness``) may go:
        inside it they are needed to recognise duplicates and to place late events,
        and nothing can be inserted before it any more. Points before ``_clean`` are
        already compact, so each point is looked at about once.
        """
        h = self.history
        times, states = h.ts, h.st
        cut = bisect_left(times, horizon)
        start = self._clean
        if cut <= start:
            return
        fast = native.native
        keep = (fast.compact_keep if fast is not None else _compact_keep)(times, states, start, cut)
        if keep is None:  # every point kept (a storm: each one a change)
            self._clean = cut
            return
        keep_t, keep_s = keep
        self._clean = start + len(keep_t)
        times[start:cut] = float_column(keep_t)
        states[start:cut] = state_column(keep_s)
        h.tag[start:cut] = array("I", bytes(4 * len(keep_t)))
        h._touched(start)

    def prune(self, cut: float, allowed_lateness: float) -> None:
        """Bound memory: compact outside the lateness window, forget before ``cut``."""
        horizon = self.newest - allowed_lateness
        self.compact(horizon)
        removed = self.history.prune_before(min(cut, horizon))
        self._clean = max(0, self._clean - removed)

    # -- persistence ---------------------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        return {"c": self.component, "n": None if self.newest == -math.inf else self.newest,
                "h": self.history.to_obj()}

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ComponentTracker:
        tracker = cls(obj["c"])
        tracker.newest = -math.inf if obj["n"] is None else float(obj["n"])
        tracker.history = Timeline.from_obj(obj["h"])
        return tracker

    def to_record(self, out: Packer) -> dict[str, Any]:
        """``to_obj`` with the history's columns packed into ``out`` (streams/record.py)."""
        return {"c": self.component, "n": None if self.newest == -math.inf else self.newest,
                "h": self.history.pack(out)}

    def small_record(self, limit: int) -> bytes | None:
        """``to_record``'s whole record (``Packer.encode``), when the history carries no
        tag and its columns are under ``limit`` bytes; else None. The same bytes without
        a packer: a components checkpoint in a storm over many components writes
        thousands of these, each of a few points."""
        h = self.history
        ts = h.ts
        n = len(ts)
        if len(h.tags) > 1 or 9 * n >= limit or _BIG:
            return None
        return join({"c": self.component, "n": None if self.newest == -math.inf else self.newest,
                     "h": {"n": n, "o": 0}}, [ts, h.st])

    @staticmethod
    def small_records(trackers: list[ComponentTracker], limit: int) -> list[bytes | None]:
        """``small_record(limit)`` of each tracker, in one C call when the extension is
        there (a components checkpoint in a storm writes one per component)."""
        fast = native.native
        if fast is not None:
            return fast.small_records(trackers, limit, MAGIC, orjson.dumps)  # type: ignore[no-any-return]
        return [t.small_record(limit) for t in trackers]

    @classmethod
    def from_record(cls, obj: dict[str, Any], body: memoryview) -> ComponentTracker:
        tracker = cls(obj["c"])
        tracker.newest = -math.inf if obj["n"] is None else float(obj["n"])
        tracker.history = Timeline.unpack(obj["h"], body, f"component {tracker.component!r}")
        return tracker


if native.native is not None:
    native.native.register("component", ComponentTracker)
