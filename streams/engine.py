"""The whole domain in one process: component trackers feeding service trackers.

The Faust pipeline splits the same two steps across a repartition topic (components
keyed by component, services keyed by service); this class runs them back to back and
is what the tests, the benchmark and the reference comparisons drive. Both use the
same trackers and the same report functions, so they cannot drift apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from streams.batch import WireSegment, apply_columns, decode
from streams.catalog import Catalog
from streams.component import OUTCOMES, ComponentTracker, Outcome, Segment
from streams.events import ComponentEvent, InvalidEvent, parse_event
from streams.report import Outage, Report, component_report, outages, service_report
from streams.service import ServiceTracker, in_time_order
from streams.states import BY_NAME
from streams.unmapped import UnmappedTracker
from streams.windows import retention_for

DEFAULT_ALLOWED_LATENESS = 600.0

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

    def apply_raw_many(self, raws: Sequence[bytes], now: float) -> list[tuple[Outcome, str | None]]:
        """``apply_raw`` on each message of a batch, in order; the same outcomes and the
        same trackers afterwards, as the pipeline's two stages work on a fetched batch.

        Stage 1 (``batch.decode``, ``batch.apply_columns``) runs over the whole batch and
        collects the segments per service; each service tracker then takes its share in
        one ``apply_many``, sorted by ``in_time_order`` as stage 2 does. ``forward`` is
        not called.
        """
        cols, index, rejects = decode(raws, now)
        results: list[tuple[Outcome, str | None]] = [_ACCEPTED] * len(raws)
        counts = self.counts
        for i, reason in rejects:
            counts["invalid"] += 1
            results[i] = ("invalid", reason)
        pending: dict[str, list[WireSegment]] = {}
        done = apply_columns(self.components, cols, self.catalog.reverse_index,
                             self.allowed_lateness, pending)
        counts["accepted"] += done.accepted
        comps, states, tss = cols
        for i, outcome in done.others:
            j = i if index is None else index[i]
            if outcome == "unmapped":  # counted and kept in the books by apply()
                outcome = self.apply(ComponentEvent(comps[i], _STATES[states[i]], tss[i]))
            else:
                counts[outcome] += 1
            results[j] = _RESULT[outcome]
        models = self.catalog.models
        services_trackers = self.services
        for svc, segments in pending.items():
            svc_tracker = services_trackers.get(svc)
            if svc_tracker is None:
                svc_tracker = services_trackers[svc] = ServiceTracker(svc)
            svc_tracker.apply_many(in_time_order(segments), models[svc])
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
        report = Report(now=now, events_total=dict(self.counts), unmapped_components=self.unmapped.count())
        for name, svc in catalog.services.items():
            report.services[name] = service_report(svc, self.services.get(name), catalog, now)
        for cid, comp in catalog.components.items():
            report.components[cid] = component_report(comp, self.components.get(cid), now,
                                                      catalog.component_windows.get(cid, ()))
        return report

    def outages(self, service: str, now: float) -> list[Outage]:
        return outages(self.catalog.services[service], self.services.get(service), now,
                       self.catalog)

    def prune(self, now: float) -> None:
        """Forget history no window can read any more (call every few minutes)."""
        cut = now - retention_for([s.period for s in self.catalog.services.values()])
        for tracker in self.components.values():
            tracker.prune(cut, self.allowed_lateness)
        for name, svc in self.services.items():
            svc.prune(cut, self.catalog.calendar(name))
