"""The two Faust agents: component events -> component trackers -> service trackers.

Stage 1 consumes ``component-events`` (and the internal re-route topic), classifies
every message with the engine's ``ComponentTracker`` and forwards the ``Segment`` of
each change to every service that depends on the component, on the segments topic
keyed (and explicitly partitioned) by service. Stage 2 applies the segments to the
service's ``ServiceTracker``. Both work in batches (``take_events``): per batch each
changed tracker is serialized and written to its table once, and the segments for one
service travel as one message, so the per-event cost is the engine's work only.

Bad input never stops the worker: a message that cannot be decoded, and an event that
is too late to apply, go to the DLQ with the reason and their origin in headers.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from slawatch.agents.runtime import Runtime
from slawatch.agents.state import PartitionStats, set_current_event, stats_key
from slawatch.streams.component import ComponentTracker, Segment
from slawatch.streams.events import InvalidEvent, parse_event
from slawatch.streams.service import ServiceTracker

log = logging.getLogger("slawatch.pipeline")

#: Header names on DLQ records (values are UTF-8).
H_REASON = "slawatch-reason"
H_TOPIC = "slawatch-source-topic"
H_PARTITION = "slawatch-source-partition"
H_OFFSET = "slawatch-source-offset"

#: Prune a tracker's history at most this often (seconds) when it is written anyway.
PRUNE_EVERY = 300.0


class RateLimitedLog:
    """At most ``burst`` lines per ``interval``; the rest are counted and summarised.

    A producer gone wrong can send thousands of bad messages a second; every one is in
    the DLQ, the log only has to say that it is happening and where.
    """

    def __init__(self, logger: logging.Logger, burst: int = 20, interval: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._window_start = 0.0
        self._lines = 0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.interval:
            if self._suppressed:
                self.logger.warning("... and %d more rejected messages (see the DLQ)",
                                    self._suppressed)
            self._window_start = now
            self._lines = 0
            self._suppressed = 0
        if self._lines < self.burst:
            self._lines += 1
            self.logger.warning(msg, *args)
        else:
            self._suppressed += 1


class Pipeline:
    """The batch logic of both stages, bound to one worker's runtime and topics."""

    def __init__(self, rt: Runtime, topics: Any) -> None:
        self.rt = rt
        self.topics = topics
        self.dlq_log = RateLimitedLog(log)
        self._pruned: dict[str, float] = {}
        self._discard: dict[str, int] = defaultdict(int)

    # -- stage 1 -------------------------------------------------------------------

    def process_events(self, events: Sequence[Any]) -> None:
        """Classify and apply one batch of component-event messages."""
        rt = self.rt
        now = time.time()
        catalog = rt.catalog
        lateness = rt.settings.allowed_lateness
        comps = rt.components
        part_of = rt.component_partition
        reroute_topic = rt.settings.reroute_topic
        stats_by_part: dict[int, tuple[PartitionStats, Any]] = {}
        fanout: dict[str, list[Any]] = {}
        for ev in events:
            msg = ev.message
            p = msg.partition
            set_current_event(ev)
            entry = stats_by_part.get(p)
            if entry is None:
                stats = rt.stats.get(stats_key(p))
                if stats is None:
                    stats = PartitionStats()
                entry = stats_by_part[p] = (stats, ev)
            stats = entry[0]
            offsets = stats.offsets
            if msg.offset > offsets.get(msg.topic, -1):
                offsets[msg.topic] = msg.offset
                counts = stats.counts
            else:
                counts = self._discard  # redelivered after a crash: counted already
            raw = msg.value
            try:
                event = parse_event(raw, now)
            except InvalidEvent as exc:
                counts["invalid"] += 1
                self._dead_letter(ev, exc.reason)
                continue
            comp = event.component
            if part_of(comp) != p and msg.topic != reroute_topic:
                self._reroute(ev, comp)
                continue
            services = catalog.services_for(comp)
            if not services:
                counts["unmapped"] += 1
                if counts is stats.counts:
                    stats.unmapped.observe(comp, event.state, event.ts)
                if comp in catalog.components:
                    tracker = self._component(comp, ev)
                    outcome, _ = tracker.apply(event, lateness)
                    if outcome == "accepted":
                        comps.touch(comp, ev)
                continue
            tracker = self._component(comp, ev)
            try:
                outcome, segment = tracker.apply(event, lateness)
            except Exception as exc:
                # An engine bug must not stop the pipeline: the message gets an outcome
                # (invalid), goes to the DLQ with the error, and the log has the trace.
                comps.touch(comp, ev)
                counts["invalid"] += 1
                log.exception("internal error on %s[%d]@%d", msg.topic, p, msg.offset)
                self._dead_letter(ev, f"internal error: {type(exc).__name__}: {exc}")
                continue
            counts[outcome] += 1
            if outcome == "accepted":
                comps.touch(comp, ev)
            elif outcome == "late":
                self._dead_letter(ev, "late")
            elif outcome == "duplicate":
                # The first delivery may have been applied and written before a crash
                # lost its forward: re-send the truth around ts (an idempotent overwrite).
                segment = tracker.segment_at(event.ts)
            if segment is not None:
                obj = segment.to_obj()
                for name in services:
                    fanout.setdefault(name, []).append(obj)
        # Segments first, then each partition's counters, then its trackers (same
        # changelog partition, so a crash keeps a prefix: see PartitionStats).
        send = self.topics.segments.send_soon
        part_svc = rt.service_partition
        for name, segs in fanout.items():
            send(key=name, value=orjson.dumps(segs), partition=part_svc(name))
        for p, (stats, ev) in stats_by_part.items():
            rt.stats.put(stats_key(p), stats, ev)
        rt.stats.flush()
        comps.flush(self._prune_component)
        rt.counters.batches += 1
        rt.counters.events += len(events)

    def _component(self, comp: str, ev: Any) -> ComponentTracker:
        comps = self.rt.components
        tracker = comps.get(comp)
        if tracker is None:
            tracker = ComponentTracker(comp)
            comps.put(comp, tracker, ev)
        return tracker

    def _dead_letter(self, ev: Any, reason: str) -> None:
        msg = ev.message
        self.dlq_log.warning(
            "rejected message %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason
        )
        self.topics.dlq.send_soon(
            key=msg.key,
            value=msg.value,
            headers=[
                (H_REASON, reason.encode()),
                (H_TOPIC, str(msg.topic).encode()),
                (H_PARTITION, str(msg.partition).encode()),
                (H_OFFSET, str(msg.offset).encode()),
            ],
        )

    def _reroute(self, ev: Any, comp: str) -> None:
        """Forward a message that arrived on the wrong partition to the right one.

        The original bytes travel unchanged; they are classified and counted once,
        where they land, so the component's history stays in one partition.
        """
        rt = self.rt
        rt.counters.rerouted += 1
        self.topics.reroute.send_soon(
            key=comp.encode(), value=ev.message.value, partition=rt.component_partition(comp)
        )

    def _prune_component(self, key: str, tracker: ComponentTracker) -> None:
        now = time.time()
        if now - self._pruned.get(key, 0.0) >= PRUNE_EVERY:
            self._pruned[key] = now
            tracker.prune(now - self.rt.retention, self.rt.settings.allowed_lateness)

    # -- stage 2 -------------------------------------------------------------------

    def process_segments(self, events: Sequence[Any]) -> None:
        """Apply one batch of segment messages to the service trackers."""
        rt = self.rt
        models = rt.catalog.models
        svcs = rt.services
        for ev in events:
            set_current_event(ev)
            key = ev.key
            name = key.decode() if isinstance(key, bytes) else str(key)
            model = models.get(name)
            if model is None:
                continue  # the service left the catalog since this was sent
            tracker = svcs.get(name)
            if tracker is None:
                tracker = ServiceTracker(name)
                svcs.put(name, tracker, ev)
            for obj in orjson.loads(ev.message.value):
                tracker.apply(Segment.from_obj(obj), model)
            svcs.touch(name, ev)
        svcs.flush(self._prune_service)

    def _prune_service(self, key: str, tracker: ServiceTracker) -> None:
        now = time.time()
        pkey = "s:" + key
        if now - self._pruned.get(pkey, 0.0) >= PRUNE_EVERY:
            self._pruned[pkey] = now
            tracker.prune(now - self.rt.retention)


def install_agents(app: Any, rt: Runtime, topics: Any) -> Pipeline:
    """Register both agents on ``app``; returns the pipeline (for stats and tests)."""
    pipeline = Pipeline(rt, topics)
    size = rt.settings.batch_size
    within = rt.settings.batch_within

    async def component_events(stream: Any) -> None:
        async for batch in stream.take_events(size, within=within):
            pipeline.process_events(batch)

    async def service_segments(stream: Any) -> None:
        async for batch in stream.take_events(size, within=within):
            pipeline.process_segments(batch)

    app.agent(topics.events_in, name="slawatch.component_events")(component_events)
    app.agent(topics.segments, name="slawatch.service_segments")(service_segments)
    return pipeline
