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


class ServiceTracker:
    __slots__ = ("components", "current", "frontier", "high_downtime", "high_outages", "name",
                 "pruned_downtime", "pruned_outages", "timeline")

    def __init__(self, name: str) -> None:
        self.name = name
        self.components: dict[str, Timeline] = {}
        # Latest state of every component the model reads: the compiled predicates
        # index this dict directly, so every key must be present.
        self.current: dict[str, State] = {}
        self.timeline = Timeline()  # service state, tag = blamed components when down
        self.frontier = -math.inf  # latest point of any component timeline
        self.pruned_outages = 0
        self.pruned_downtime = 0.0
        # Highest counter values reported so far: a late event that merges two outages
        # must not make a Prometheus counter go down (it would read as a reset).
        self.high_outages = 0
        self.high_downtime = 0.0

    def counters(self, now: float) -> tuple[int, float, float]:
        """(outages begun, downtime of ended outages, current outage length), monotonic."""
        count, ended, current = self.timeline.outage_counters(now)
        count = max(count + self.pruned_outages, self.high_outages)
        ended = max(ended + self.pruned_downtime, self.high_downtime)
        self.high_outages, self.high_downtime = count, ended
        return count, ended, current

    def bind(self, model: ServiceModel) -> None:
        """Make sure every component the (possibly reloaded) model reads has a state."""
        current = self.current
        for comp in model.components:
            if comp not in current:
                tl = self.components.get(comp)
                current[comp] = tl.last_state if tl is not None else UP

    def apply(self, seg: Segment, model: ServiceModel) -> None:
        comp = seg.component
        tl = self.components.get(comp)
        if tl is None:
            tl = self.components[comp] = Timeline()
        if len(self.current) < len(model.components):
            self.bind(model)
        current = self.current
        start = seg.start
        if seg.end == math.inf and start >= self.frontier:
            # In order: one evaluation over the latest states (inlined: the hot path).
            tl.append_state(start, seg.state)
            self.frontier = start
            current[comp] = seg.state
            st = model.state_of(current)
            self.timeline.append_state(start, st, model.blame(current) if st == DOWN else NO_TAG)
            return
        tl.assign(seg.start, seg.end, [(seg.start, int(seg.state), NO_TAG)])
        current[comp] = tl.last_state
        # The segment left points at its start and, when it ends, at its end.
        last = seg.start if seg.end == math.inf else seg.end
        if last > self.frontier:
            self.frontier = last
        self._recompute(seg.start, seg.end, model)

    def _recompute(self, start: float, end: float, model: ServiceModel) -> None:
        times = {start}
        comps = self.components
        for comp in model.components:
            tl = comps.get(comp)
            if tl is not None and tl.ts:
                times.update(tl.points_between(start, end))
        points: list[tuple[float, int, Tag]] = []
        for t in sorted(times):
            states = {c: (comps[c].state_at(t) if c in comps else UP) for c in model.components}
            st = model.state_of(states)
            tag = model.blame(states) if st == DOWN else NO_TAG
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
            "ho": self.high_outages,
            "hd": self.high_downtime,
        }

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> ServiceTracker:
        tracker = cls(obj["n"])
        tracker.components = {comp: Timeline.from_obj(o) for comp, o in obj["c"].items()}
        tracker.current = {comp: tl.last_state for comp, tl in tracker.components.items()}
        tracker.timeline = Timeline.from_obj(obj["t"])
        tracker.frontier = -math.inf if obj["f"] is None else float(obj["f"])
        tracker.pruned_outages = int(obj["po"])
        tracker.pruned_downtime = float(obj["pd"])
        tracker.high_outages = int(obj.get("ho", 0))
        tracker.high_downtime = float(obj.get("hd", 0.0))
        return tracker
