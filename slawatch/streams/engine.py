"""The whole domain in one process: component trackers feeding service trackers.

The Faust pipeline splits the same two steps across a repartition topic (components
keyed by component, services keyed by service); this class runs them back to back and
is what the tests, the benchmark and the reference comparisons drive. Both use the
same trackers and the same report functions, so they cannot drift apart.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from slawatch.streams import events as _events
from slawatch.streams.catalog import Catalog
from slawatch.streams.component import _COMPACT_EVERY, OUTCOMES, ComponentTracker, Outcome, Segment
from slawatch.streams.events import ComponentEvent, InvalidEvent, parse_event
from slawatch.streams.report import Outage, Report, component_report, outages, service_report
from slawatch.streams.service import SegmentLike, ServiceTracker
from slawatch.streams.states import BY_NAME
from slawatch.streams.timeline import NO_TAG
from slawatch.streams.unmapped import UnmappedTracker
from slawatch.streams.windows import retention_for

DEFAULT_ALLOWED_LATENESS = 600.0

_INF = math.inf
#: Exact-case state names as plain ints: the batch path's first try (BY_NAME is a
#: ``{name: State}`` map; other cases go through ``parse_event``).
_STATE_OF: dict[str, int] = {name: int(state) for name, state in BY_NAME.items()}
_STATES = tuple(sorted(BY_NAME.values()))  # _STATES[i] is State(i)
_ACCEPTED: tuple[Outcome, str | None] = ("accepted", None)
_LATE: tuple[Outcome, str | None] = ("late", "late")
_RESULT: dict[Outcome, tuple[Outcome, str | None]] = {o: (o, None) for o in OUTCOMES}
_RESULT["late"] = _LATE


class Engine:
    def __init__(self, catalog: Catalog, allowed_lateness: float = DEFAULT_ALLOWED_LATENESS) -> None:
        self.catalog = catalog
        self.allowed_lateness = allowed_lateness
        self.components: dict[str, ComponentTracker] = {}
        self.services: dict[str, ServiceTracker] = {}
        self.counts: Counter[str] = Counter(dict.fromkeys(OUTCOMES, 0))
        self.unmapped = UnmappedTracker()

    def set_catalog(self, catalog: Catalog) -> None:
        """Swap in a reloaded catalog; history stays, new requirements apply from now on."""
        self.catalog = catalog
        for name, tracker in self.services.items():
            model = catalog.models.get(name)
            if model is not None:
                tracker.bind(model)

    def apply_raw(self, raw: bytes, now: float) -> tuple[Outcome, str | None]:
        """Decode and apply one message value; returns (outcome, reason for the DLQ)."""
        try:
            event = parse_event(raw, now)
        except InvalidEvent as exc:
            self.counts["invalid"] += 1
            return "invalid", exc.reason
        outcome = self.apply(event)
        if outcome == "late":
            return outcome, "late"
        return outcome, None

    def apply_raw_many(self, raws: Iterable[bytes], now: float) -> list[tuple[Outcome, str | None]]:
        """``apply_raw`` on each message of a batch, in order; the same outcomes and the
        same trackers afterwards, as the pipeline's two stages work on a fetched batch.

        Stage 1 (decode, component trackers) runs per message; the segments it emits are
        collected per service and each service tracker takes its share in one
        ``apply_many`` at the end. ``forward`` is not called. The common message -- valid,
        exact-case state, a float ``ts``, a component seen before, in time order for its
        component -- is decoded and applied inline; anything else takes the general path
        (``parse_event``, ``ComponentTracker.apply``), so reasons and outcomes are those
        of ``apply_raw``.
        """
        loads = orjson.loads
        json_error = orjson.JSONDecodeError
        valid_ids = _events._valid_ids
        max_future = _events.MAX_FUTURE_SECONDS
        state_of = _STATE_OF
        services_for = self.catalog._services_for  # catalog.services_for, inlined
        trackers = self.components
        lateness = self.allowed_lateness
        pending: dict[str, list[SegmentLike]] = {}
        results: list[tuple[Outcome, str | None]] = []
        append = results.append
        accepted = 0
        obj: Any
        get: Any
        comp: str
        ts: float
        for raw in raws:
            try:
                obj = loads(raw)
            except json_error:
                obj = None
            # Fast path: the checks of parse_event, passed; anything else re-parses there.
            if type(obj) is dict:
                get = obj.get  # typed Any: the checks below narrow the values
                comp = get("component")
                name = get("state")
                ts = get("ts")
                source = get("source")
                event_id = get("id")
                st = state_of.get(name, -1) if type(name) is str else -1
                fast = (
                    type(comp) is str and comp in valid_ids and st >= 0 and type(ts) is float
                    and ts - now <= max_future and (source is None or type(source) is str)
                    and (event_id is None or type(event_id) is str)
                )
            else:
                fast = False
            if not fast:
                try:
                    event = parse_event(raw, now)
                except InvalidEvent as exc:
                    self.counts["invalid"] += 1
                    append(("invalid", exc.reason))
                    continue
                comp, st, ts = event.component, int(event.state), event.ts
            services = services_for.get(comp)
            if not services:
                append(_RESULT[self.apply(ComponentEvent(comp, _STATES[st], ts))])  # unmapped
                continue
            tracker = trackers.get(comp)
            if tracker is None:
                tracker = trackers[comp] = ComponentTracker(comp)
            seg: SegmentLike | None
            if ts > tracker.newest:
                # ComponentTracker.apply's in-order path, inlined
                h = tracker.history
                states = h.st
                old = states[-1] if states else 0
                h.ts.append(ts)
                states.append(st)
                h.tag.append(NO_TAG)
                tracker.newest = ts
                n = tracker._since_compact + 1
                if n >= _COMPACT_EVERY:
                    tracker._since_compact = 0
                    tracker.compact(ts - lateness)
                else:
                    tracker._since_compact = n
                accepted += 1
                append(_ACCEPTED)
                if old == st:
                    continue
                seg = (comp, ts, _INF, st)
            else:
                outcome, seg = tracker.apply(ComponentEvent(comp, _STATES[st], ts), lateness)
                self.counts[outcome] += 1
                append(_RESULT[outcome])
                if seg is None:
                    continue
            for svc in services:
                try:
                    pending[svc].append(seg)
                except KeyError:
                    pending[svc] = [seg]
        self.counts["accepted"] += accepted
        models = self.catalog.models
        services_trackers = self.services
        for svc, segments in pending.items():
            svc_tracker = services_trackers.get(svc)
            if svc_tracker is None:
                svc_tracker = services_trackers[svc] = ServiceTracker(svc)
            svc_tracker.apply_many(segments, models[svc])
        return results

    def apply(self, event: ComponentEvent) -> Outcome:
        comp = event.component
        services = self.catalog._services_for.get(comp)  # catalog.services_for, inlined
        if not services:
            self.counts["unmapped"] += 1
            self.unmapped.observe(comp, event.state, event.ts)
            if comp in self.catalog.components:
                self._tracker(comp).apply(event, self.allowed_lateness)
            return "unmapped"
        tracker = self.components.get(comp)
        if tracker is None:
            tracker = self.components[comp] = ComponentTracker(comp)
        outcome, segment = tracker.apply(event, self.allowed_lateness)
        self.counts[outcome] += 1
        if segment is not None:
            self.forward(segment, services)
        return outcome

    def forward(self, segment: Segment, services: tuple[str, ...]) -> None:
        models = self.catalog.models
        trackers = self.services
        for name in services:
            tracker = trackers.get(name)
            if tracker is None:
                tracker = trackers[name] = ServiceTracker(name)
            tracker.apply(segment, models[name])

    def _tracker(self, comp: str) -> ComponentTracker:
        tracker = self.components.get(comp)
        if tracker is None:
            tracker = self.components[comp] = ComponentTracker(comp)
        return tracker

    def report(self, now: float) -> Report:
        catalog = self.catalog
        report = Report(now=now, events=dict(self.counts), unmapped_components=self.unmapped.count())
        for name, svc in catalog.services.items():
            report.services[name] = service_report(svc, self.services.get(name), catalog, now)
        for cid, comp in catalog.components.items():
            report.components[cid] = component_report(comp, self.components.get(cid), now)
        return report

    def outages(self, service: str, now: float) -> list[Outage]:
        return outages(self.catalog.services[service], self.services.get(service), now)

    def prune(self, now: float) -> None:
        """Forget history no window can read any more (call every few minutes)."""
        cut = now - retention_for([s.period for s in self.catalog.services.values()])
        for tracker in self.components.values():
            tracker.prune(cut, self.allowed_lateness)
        for svc in self.services.values():
            svc.prune(cut)
