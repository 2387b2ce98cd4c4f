"""Per-service history: the service's step function, rebuilt from component segments.

A tracker keeps its own copy of the step function of every component it reads, so one
service's state lives in one place (one partition) and needs nothing from elsewhere.

In time order (the common case) a segment ends at infinity and starts after every
point seen, and the service's new state is one evaluation of the compiled requirement
over the latest component states. A segment that lands in the past re-evaluates only
the interval it covers, at each point any of the service's components changes there,
so a late correction costs the changes inside the lateness window, not a replay.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import islice, repeat
from operator import itemgetter, le
from typing import Any

from streams import native
from streams.calendars import ServiceCalendar
from streams.catalog import ServiceModel
from streams.record import Packer
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import NO_TAG, Timeline, new_timeline

_INF = math.inf
_UP, _MAINT, _DOWN = int(UP), int(MAINTENANCE), int(DOWN)
#: ``_PLAIN[s]`` is ``int(s)`` for a state or a plain int, without a call.
_PLAIN = (0, 1, 2)

#: ``(component, start, end, state)``: a ``Segment`` or a plain tuple; an open end is
#: ``math.inf``.
SegmentLike = Sequence[Any]


class ServiceTracker:
    __slots__ = ("_acct", "_bad", "_down", "_model", "components", "frontier", "name",
                 "pruned_downtime", "pruned_outages", "timeline", "whole_from")

    def __init__(self, name: str) -> None:
        self.name = name
        # Copies are only ever added (at the end): incremental checkpoints find each
        # timeline's columns by their order (agents/worker/patchlog.py).
        self.components: dict[str, Timeline] = {}
        # Latest state of every component the bound model reads, as two bitmasks over
        # its slots (``model.bits``): bit set in ``_down`` when DOWN, in ``_bad`` when not
        # UP. Always equal to the last state of the matching component timeline.
        self._down = 0
        self._bad = 0
        self._model: ServiceModel | None = None  # the model the masks are laid out for
        self.timeline = new_timeline()  # service state, tag = blamed components when down
        self.frontier = -math.inf  # latest point of any component timeline
        self.pruned_outages = 0
        self.pruned_downtime = 0.0
        # The history is whole from here on: the last prune's cut (the day rollups of
        # periods.py recompute no day before it).
        self.whole_from = -math.inf
        # The calendars applied to this history (``accounting.accounted``), while they
        # and the history stay the same; never stored.
        self._acct: Any = None

    @property
    def current(self) -> list[int]:
        """Latest state of every slot of the bound model (a view of the bitmasks)."""
        model = self._model
        if model is None:
            return []
        d, m, bits = self._down, self._bad, model.bits
        return [_DOWN if d & bits[c] else (_MAINT if m & bits[c] else _UP) for c in model.slots]

    def counters(self, now: float) -> tuple[int, float, float]:
        """(outages begun, downtime of ended outages, current outage length) at ``now``.

        Derived from the timeline as it stands, so the final numbers are exact whatever
        order the segments came in. The price: a late event that merges two outages
        (or the repartition topic delivering one component's change after another's)
        can step a counter back once, which Prometheus reads as a counter reset. A
        high-water mark would hide that but keep transient values for ever.
        """
        count, ended, current = self.timeline.outage_counters(now)
        return count + self.pruned_outages, ended + self.pruned_downtime, current

    def bind(self, model: ServiceModel) -> None:
        """Lay out the latest component states for the (possibly reloaded) model."""
        comps = self.components
        d = m = 0
        for comp, bit in model.bits.items():
            tl = comps.get(comp)
            if tl is not None and tl.st:
                s = tl.st[-1]
                if s == _DOWN:
                    d |= bit
                    m |= bit
                elif s:
                    m |= bit
        self._down, self._bad = d, m
        self._model = model

    def apply(self, seg: SegmentLike, model: ServiceModel) -> None:
        """Apply one segment: ``apply_many`` of a batch of one."""
        self.apply_many((seg,), model)

    def apply_many(self, segments: Iterable[SegmentLike], model: ServiceModel) -> None:
        """Apply segments in the order given; the same result as ``apply`` on each in turn.

        In time order (each segment open-ended, starting at or after every point seen)
        the service state is evaluated once per segment, from the bitmasks of the latest
        component states. Segments that land in the past only update the component
        copies, and the service is re-evaluated once over the union of the intervals
        they cover, as soon as a segment comes that is in time order again (or at the
        end). Sorted by start (``in_time_order``), the late segments of a batch are its
        head: in the pipeline, where another stage-1 partition was ahead of them, so the
        sweep covers that skew and the rest of the batch keeps the fast path.

        A segment is any ``(component, start, end, state)`` tuple, a ``Segment`` too.
        """
        if model is not self._model:
            self.bind(model)
        fast = native.native
        if fast is not None and model.plan is not None:
            fast.apply_many(self, segments, model)  # this loop in C (see _native.c)
            return
        comps = self.components
        bits = model.bits
        state_mask = model.state_mask
        up_state = model.up_state
        blame_mask = model.blame_mask
        frontier = self.frontier
        d, m = self._down, self._bad
        svc = self.timeline
        sts, sst, stag = svc.ts, svc.st, svc.tag
        dirty: list[tuple[float, float]] | None = None
        for comp, start, end, state in segments:
            if dirty is not None and start >= frontier and end == _INF:
                # In order again after late segments: settle them first (the sweep
                # reads the copies, which hold everything applied so far).
                self._settle(dirty, model)
                dirty = None
            state = _PLAIN[state]  # plain ints in the lists (a State is an IntEnum)
            tl = comps.get(comp)
            if tl is None:
                tl = comps[comp] = new_timeline()
            times = tl.ts
            if end == _INF and (not times or start >= times[-1]):
                # In order for the component: its value from `start` on (append_state
                # inlined for a new instant; component copies never carry tags).
                if times and times[-1] == start:
                    tl.append_state(start, state)
                else:
                    states = tl.st
                    if (states[-1] != state) if states else state:
                        times.append(start)
                        states.append(state)
                        tl.tag.append(0)  # NO_TAG
                bit = bits.get(comp)
                if bit is not None:  # None: a component the (reloaded) model no longer reads
                    d, m = _masks_with(d, m, bit, state)
                if start < frontier or dirty is not None:
                    # In the past of another component's change (or after a segment
                    # that was, at the same instant): re-evaluated when settled.
                    if start > frontier:
                        frontier = start
                    if dirty is None:
                        dirty = []
                    dirty.append((start, _INF))
                    continue
                frontier = start
                st = state_mask(d, m) if m else up_state
                g = svc.intern(blame_mask(d)) if st == _DOWN else 0
                if sts and sts[-1] == start:
                    svc.append_indexed(start, st, g)
                elif (sst[-1] != st or stag[-1] != g) if sst else (st or g):
                    sts.append(start)
                    sst.append(st)
                    stag.append(g)
                continue
            # In the past: overwrite the copy; the service is re-evaluated at the end.
            tl.assign(start, end, [(start, state, NO_TAG)])
            bit = bits.get(comp)
            if bit is not None:
                last = tl.st[-1] if tl.st else _UP
                d = d | bit if last == _DOWN else d & ~bit
                m = m | bit if last else m & ~bit
            # The segment left points at its start and, when it ends, at its end.
            reach = start if end == _INF else end
            if reach > frontier:
                frontier = reach
            if dirty is None:
                dirty = []
            dirty.append((start, end))
        self._down, self._bad = d, m
        self.frontier = frontier
        if dirty:
            self._settle(dirty, model)

    def apply_columns(self, comps: Sequence[str], starts: Sequence[float],
                      ends: Sequence[float] | None, states: Sequence[int],
                      model: ServiceModel) -> None:
        """``apply_many(in_time_order_columns(comps, starts, ends, states), model)``: a
        batch of segments given as columns (``ends`` None: all open-ended), merged into
        time order first. Open-ended ones are applied in C straight from the columns
        (``_native.apply_columns``, the same order and steps), without a tuple and a
        float object a segment: in an alert storm these were a third of stage 2."""
        fast = native.native
        if (fast is not None and model.plan is not None and type(comps) is list
                and type(states) is bytes and (ends is None or _OPEN.issuperset(ends))):
            if model is not self._model:
                self.bind(model)
            if fast.apply_columns(self, comps, starts, states, model):
                return
        self.apply_many(in_time_order_columns(comps, starts, ends, states), model)

    def _settle(self, dirty: list[tuple[float, float]], model: ServiceModel) -> None:
        """Re-evaluate the union of the ``dirty`` intervals, one sweep per run."""
        dirty.sort()
        a, b = dirty[0]
        for x, y in dirty:
            if x > b:
                self._recompute(a, b, model)
                a, b = x, y
            elif y > b:
                b = y
        self._recompute(a, b, model)

    def _recompute(self, start: float, end: float, model: ServiceModel) -> None:
        """Re-evaluate the service on [start, end) from the component copies: one sweep
        over their points in the interval, the bitmasks updated point by point.

        Late segments come from events delayed within the allowed lateness and from
        stage-1 partitions apart in event time (the worker holds a backlog's partitions
        together, ``agents/worker/alignment.py``, but a partition may stay away longer):
        the points are gathered with slices and written as columns, so what is left per
        point is its evaluation.
        """
        fast = native.native
        if fast is not None and model.plan is not None and fast.recompute(self, start, end, model):
            return  # done in C (models with a program: at most 64 components)
        comps = self.components
        d = m = 0
        changes: list[tuple[float, int, int]] = []
        for comp, bit in model.bits.items():
            tl = comps.get(comp)
            if tl is None:
                continue
            ts = tl.ts
            if not ts:
                continue
            sts = tl.st
            i = bisect_right(ts, start)
            s = sts[i - 1] if i else _UP
            if s:
                m |= bit
                if s == _DOWN:
                    d |= bit
            j = len(ts) if end == _INF else bisect_left(ts, end, i)
            if j > i:
                changes += zip(ts[i:j], repeat(bit, j - i), sts[i:j], strict=True)
        state_mask, up_state, blame_mask = model.state_mask, model.up_state, model.blame_mask
        last_st = state_mask(d, m) if m else up_state
        last_tag = blame_mask(d) if last_st == _DOWN else NO_TAG
        pts, psts, ptags = [start], [last_st], [last_tag]
        if changes:
            changes.sort()
            at = changes[0][0]
            for t, bit, s in changes:
                if t != at:
                    st = state_mask(d, m) if m else up_state
                    tag = blame_mask(d) if st == _DOWN else NO_TAG
                    if st != last_st or tag != last_tag:
                        pts.append(at)
                        psts.append(st)
                        ptags.append(tag)
                        last_st, last_tag = st, tag
                    at = t
                d, m = _masks_with(d, m, bit, s)
            st = state_mask(d, m) if m else up_state
            tag = blame_mask(d) if st == _DOWN else NO_TAG
            if st != last_st or tag != last_tag:
                pts.append(at)
                psts.append(st)
                ptags.append(tag)
        self.timeline.assign_tagged(start, end, pts, psts, ptags)

    def state_at(self, t: float) -> State:
        return self.timeline.state_at(t)

    def prune(self, cut: float, calendar: ServiceCalendar | None = None) -> None:
        """Forget what no window from ``cut`` on can see; keep counters whole.

        Counters must not drop when history goes, so the outages that end before the
        kept part are carried in ``pruned_*``. The cut is moved back to the start of a
        down run it would split, so a run is always counted in one piece. With a
        ``calendar`` (CONTRACT §6) the outages counted are those of the accounted
        history (runs of down inside service time), and the component copies are kept
        from the service's first kept point on, as maintenance windows re-evaluate
        the service from them.
        """
        tl = self.timeline
        i = bisect_right(tl.ts, cut) - 1
        while i > 0 and tl.st[i] == DOWN and tl.st[i - 1] == DOWN:
            i -= 1
        if i > 0:
            if calendar is not None:
                from streams.accounting import pruned_counters

                count, seconds = pruned_counters(self, calendar, tl.ts[i])
                self.pruned_outages += count
                self.pruned_downtime += seconds
            else:
                for k in range(i):
                    if tl.st[k] == DOWN:
                        if k == 0 or tl.st[k - 1] != DOWN:
                            self.pruned_outages += 1
                        self.pruned_downtime += tl.ts[k + 1] - tl.ts[k]
            del tl.ts[:i], tl.st[:i], tl.tag[:i]
            tl._touched(0)
            tl.compact_tags()
        keep = cut
        if calendar is not None and calendar.windows and tl.ts:
            keep = min(cut, tl.ts[0])
        for comp_tl in self.components.values():
            comp_tl.prune_before(keep)
        if cut > self.whole_from:
            self.whole_from = cut

    # -- persistence ---------------------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        obj = self.to_obj_meta()
        obj["c"] = {comp: tl.to_obj() for comp, tl in self.components.items()}
        obj["t"] = self.timeline.to_obj()
        return obj

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ServiceTracker:
        tracker = cls(obj["n"])
        tracker.components = {comp: Timeline.from_obj(o) for comp, o in obj["c"].items()}
        tracker.timeline = Timeline.from_obj(obj["t"])
        tracker._load_meta(obj)
        return tracker

    def to_record(self, out: Packer) -> dict[str, Any]:
        """``to_obj`` with the timelines' columns packed into ``out`` (streams/record.py)."""
        obj = self.to_obj_meta()
        obj["c"] = Timeline.pack_all(self.components, out)
        obj["t"] = self.timeline.pack(out)
        return obj

    @classmethod
    def from_record(cls, obj: dict[str, Any], body: memoryview) -> ServiceTracker:
        tracker = cls(obj["n"])
        what = f"service {tracker.name!r}"
        tracker.components = {comp: Timeline.unpack(o, body, what) for comp, o in obj["c"].items()}
        tracker.timeline = Timeline.unpack(obj["t"], body, what)
        tracker._load_meta(obj)
        return tracker

    def to_obj_meta(self) -> dict[str, Any]:
        return {
            "n": self.name,
            "f": None if self.frontier == -math.inf else self.frontier,
            "po": self.pruned_outages,
            "pd": self.pruned_downtime,
            **({} if self.whole_from == -math.inf else {"wf": self.whole_from}),
        }

    def _load_meta(self, obj: dict[str, Any]) -> None:
        self.frontier = -math.inf if obj["f"] is None else float(obj["f"])
        self.pruned_outages = int(obj["po"])
        self.pruned_downtime = float(obj["pd"])
        self.whole_from = float(obj.get("wf", -math.inf))


def _masks_with(down: int, bad: int, bit: int, state: int) -> tuple[int, int]:
    """The masks (``_down``, ``_bad``) with the slot ``bit`` in ``state``: DOWN sets it in
    both, MAINTENANCE in ``_bad`` only, UP in neither."""
    if state == _DOWN:
        return down | bit, bad | bit
    if state:
        return down & ~bit, bad | bit
    return down & ~bit, bad & ~bit


def in_time_order(segs: Sequence[SegmentLike]) -> Sequence[SegmentLike]:
    """A service's segments of one batch sorted by start, each component's own order kept.

    In the pipeline they come from several stage-1 partitions, each in event time order,
    interleaved by batch; in any stream, events delayed within the allowed lateness
    interleave components too. Applied as they come, each such segment would land "in
    the past" of another component's and make the tracker re-evaluate. A component's later segment
    overrides its earlier one, so its own order is the one that must not change (the
    result does not depend on the order across components). Open-ended segments of a
    component start at its newest point, so in its own order their starts never
    decrease and a stable sort by start keeps that order; a finite one (a late
    correction) may start earlier than the one before it, so then the per-component
    lists are merged instead.
    """
    fast = native.native
    if fast is not None and fast.is_in_time_order(segs):
        return segs
    if _OPEN.issuperset(map(_end, segs)):
        return sorted(segs, key=_start)
    comps: dict[str, list[SegmentLike]] = {}
    for seg in segs:
        lst = comps.get(seg[0])
        if lst is None:
            comps[seg[0]] = [seg]
        else:
            lst.append(seg)
    if len(comps) == 1:
        return segs
    return list(heapq.merge(*comps.values(), key=_start))


def in_time_order_columns(comps: Sequence[str], starts: Sequence[float],
                          ends: Sequence[float] | None, states: Sequence[int]) -> Iterable[SegmentLike]:
    """``in_time_order`` of segments given as columns (``ends`` None: all open-ended).

    Open-ended ones are yielded without a tuple each (``zip`` reuses its tuple when
    ``apply_many`` unpacks it): the starts are sorted as an index, stably, so each
    component keeps its own order; a batch already in order is not sorted at all.
    """
    if ends is None or _OPEN.issuperset(ends):
        n = len(starts)
        fast = native.native
        if fast is not None and type(comps) is list and type(starts) is list:
            # In C: the order checked, and a batch out of order sorted (stably) into
            # tuples, without three calls a segment through ``map``.
            ordered = fast.time_ordered(comps, starts, states)
            if ordered is not None:
                return ordered  # type: ignore[no-any-return]
            return zip(comps, starts, repeat(_INF, n), states, strict=True)
        if all(map(le, starts, islice(starts, 1, None))):
            return zip(comps, starts, repeat(_INF, n), states, strict=True)
        order = sorted(range(n), key=starts.__getitem__)
        return zip(map(comps.__getitem__, order), map(starts.__getitem__, order),
                   repeat(_INF, n), map(states.__getitem__, order), strict=True)
    return in_time_order(list(zip(comps, starts, ends, states, strict=True)))


_start = itemgetter(1)
_end = itemgetter(2)
_OPEN = frozenset((math.inf,))


if native.native is not None:
    native.native.register("service", ServiceTracker)
