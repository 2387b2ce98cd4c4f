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

import math
from typing import Any

from slawatch.streams.catalog import ServiceModel
from slawatch.streams.component import Segment
from slawatch.streams.states import DOWN, UP, State
from slawatch.streams.timeline import NO_TAG, Tag, Timeline

_INF = math.inf
_UP, _DOWN = int(UP), int(DOWN)


class ServiceTracker:
    __slots__ = ("_model", "components", "current", "frontier", "name",
                 "pruned_downtime", "pruned_outages", "timeline")

    def __init__(self, name: str) -> None:
        self.name = name
        self.components: dict[str, Timeline] = {}
        # Latest state of every component the bound model reads, one slot per component
        # (``model.slots``): the compiled evaluators index this list directly. Always
        # equal to the last state of the matching component timeline (UP without one).
        self.current: list[int] = []
        self._model: ServiceModel | None = None  # the model ``current`` is laid out for
        self.timeline = Timeline()  # service state, tag = blamed components when down
        self.frontier = -math.inf  # latest point of any component timeline
        self.pruned_outages = 0
        self.pruned_downtime = 0.0

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
        current = []
        for comp in model.slots:
            tl = comps.get(comp)
            current.append(int(tl.st[-1]) if tl is not None and tl.st else _UP)
        self.current = current
        self._model = model

    def apply(self, seg: Segment, model: ServiceModel) -> None:
        if model is not self._model:
            self.bind(model)
        comp = seg.component
        comps = self.components
        tl = comps.get(comp)
        if tl is None:
            tl = comps[comp] = Timeline()
        start = seg.start
        state = seg.state
        if seg.end == _INF and start >= self.frontier:
            # In order: one evaluation over the latest states. This is the hot path, so
            # Timeline.append_state is inlined for the common case of a new instant
            # (component copies never carry tags).
            times = tl.ts
            if times and times[-1] == start:
                tl.append_state(start, state)
            else:
                states = tl.st
                if (states[-1] != state) if states else (state != _UP):
                    times.append(start)
                    states.append(state)
                    tl.tag.append(NO_TAG)
            self.frontier = start
            current = self.current
            slot = model.index.get(comp)
            if slot is not None:  # None: a component the (reloaded) model no longer reads
                current[slot] = state
            st = model.state_ix(current)
            tag = model.blame_ix(current, model.slots) if st == _DOWN else NO_TAG
            svc = self.timeline
            times = svc.ts
            if times and times[-1] == start:
                svc.append_state(start, st, tag)
                return
            states = svc.st
            if (states[-1] != st or svc.tag[-1] != tag) if states else (st != _UP or tag):
                times.append(start)
                states.append(st)
                svc.tag.append(tag)
            return
        tl.assign(start, seg.end, [(start, int(state), NO_TAG)])
        slot = model.index.get(comp)
        if slot is not None:
            self.current[slot] = int(tl.st[-1]) if tl.st else _UP
        # The segment left points at its start and, when it ends, at its end.
        last = start if seg.end == _INF else seg.end
        if last > self.frontier:
            self.frontier = last
        self._recompute(start, seg.end, model)

    def _recompute(self, start: float, end: float, model: ServiceModel) -> None:
        times = {start}
        comps = self.components
        for comp in model.slots:
            tl = comps.get(comp)
            if tl is not None and tl.ts:
                times.update(tl.points_between(start, end))
        timelines = [comps.get(c) for c in model.slots]
        state_ix, blame_ix, names = model.state_ix, model.blame_ix, model.slots
        points: list[tuple[float, int, Tag]] = []
        for t in sorted(times):
            states = [int(tl.state_at(t)) if tl is not None else _UP for tl in timelines]
            st = state_ix(states)
            tag = blame_ix(states, names) if st == _DOWN else NO_TAG
            if points and points[-1][1] == st and points[-1][2] == tag:
                continue
            points.append((t, st, tag))
        self.timeline.assign(start, end, points)

    def state_at(self, t: float) -> State:
        return self.timeline.state_at(t)

    def prune(self, cut: float) -> None:
        """Forget what no window from ``cut`` on can see; keep counters whole.

        Counters must not drop when history goes, so the outages that end before the
        kept part are carried in ``pruned_*``. The cut is moved back to the start of a
        down run it would split, so a run is always counted in one piece.
        """
        tl = self.timeline
        from bisect import bisect_right

        i = bisect_right(tl.ts, cut) - 1
        while i > 0 and tl.st[i] == DOWN and tl.st[i - 1] == DOWN:
            i -= 1
        if i > 0:
            for k in range(i):
                if tl.st[k] == DOWN:
                    if k == 0 or tl.st[k - 1] != DOWN:
                        self.pruned_outages += 1
                    self.pruned_downtime += tl.ts[k + 1] - tl.ts[k]
            del tl.ts[:i], tl.st[:i], tl.tag[:i]
            tl._valid = 0
        for comp_tl in self.components.values():
            comp_tl.prune_before(cut)

    # -- persistence ---------------------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        return {
            "n": self.name,
            "c": {comp: tl.to_obj() for comp, tl in self.components.items()},
            "t": self.timeline.to_obj(),
            "f": None if self.frontier == -math.inf else self.frontier,
            "po": self.pruned_outages,
            "pd": self.pruned_downtime,
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ServiceTracker:
        tracker = cls(obj["n"])
        tracker.components = {comp: Timeline.from_obj(o) for comp, o in obj["c"].items()}
        tracker.timeline = Timeline.from_obj(obj["t"])
        tracker.frontier = -math.inf if obj["f"] is None else float(obj["f"])
        tracker.pruned_outages = int(obj["po"])
        tracker.pruned_downtime = float(obj["pd"])
        return tracker
