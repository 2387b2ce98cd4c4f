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

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from slawatch.agents.runtime import Runtime
from slawatch.agents.state import PartitionStats, first_time, set_current_event, stats_key
from slawatch.streams.component import ComponentTracker, Segment
from slawatch.streams.events import InvalidEvent, parse_event
from slawatch.streams.service import ServiceTracker

log = logging.getLogger("slawatch.pipeline")

#: Header names on DLQ records (values are UTF-8).
H_REASON = "slawatch-reason"
H_TOPIC = "slawatch-source-topic"
H_PARTITION = "slawatch-source-partition"
H_OFFSET = "slawatch-source-offset"
#: Set (to the original size in bytes) when a DLQ record carries only the message's head.
H_TRUNCATED = "slawatch-truncated"
#: Room left under the producer's max request size for headers and batch overhead.
DLQ_HEADROOM = 64 * 1024

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
        self._now = 0.0
        self._last_offset: dict[tuple[str, int], int] = {}
        self._pending1: list[Any] = []
        self._stats_by_part: dict[int, tuple[PartitionStats, Any]] = {}
        self._fanout: dict[str, list[Any]] = {}
        self._pending2: list[Any] = []
        self._futures1: list[Any] = []  # DLQ and re-route sends of pending messages

    # -- stage 1 -------------------------------------------------------------------

    async def process_events(self, events: Sequence[Any]) -> None:
        """Classify and apply a batch of component-event messages, then commit."""
        for ev in events:
            self.handle_event(ev)
        await self.commit_events()

    @property
    def pending_events(self) -> int:
        return len(self._pending1)

    def handle_event(self, ev: Any) -> None:
        """Classify and apply one message; its effects are written at ``flush_events``."""
        rt = self.rt
        if not self._pending1:
            self._now = time.time()
        self._pending1.append(ev)
        msg = ev.message
        p = msg.partition
        set_current_event(ev)
        entry = self._stats_by_part.get(p)
        if entry is None:
            stats = rt.stats.get(stats_key(p))
            if stats is None:
                stats = PartitionStats()
            entry = self._stats_by_part[p] = (stats, ev)
        stats = entry[0]
        ranges = stats.offsets.get(msg.topic)
        if ranges is None:
            ranges = stats.offsets[msg.topic] = []
        # Redelivered after a crash (counted already): classify again, count nothing.
        counts = stats.counts if first_time(ranges, msg.offset) else self._discard
        tp = (msg.topic, p)
        if msg.offset <= self._last_offset.get(tp, -1):
            rt.counters.rewound += 1
            log.info("offset went back on %s[%d]: %d after %d", msg.topic, p, msg.offset,
                     self._last_offset[tp])
        self._last_offset[tp] = msg.offset
        raw = msg.value
        try:
            event = parse_event(raw, self._now)
        except InvalidEvent as exc:
            counts["invalid"] += 1
            self._dead_letter(ev, exc.reason)
            return
        comp = event.component
        if rt.component_partition(comp) != p and msg.topic != rt.settings.reroute_topic:
            self._reroute(ev, comp)
            return
        catalog = rt.catalog
        lateness = rt.settings.allowed_lateness
        comps = rt.components
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
            return
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
            return
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
            fanout = self._fanout
            for name in services:
                fanout.setdefault(name, []).append(obj)

    def flush_events(self) -> tuple[list[Any], list[Any]]:
        """Write what the pending messages changed; returns (messages, send futures).

        Order: segments first, then each partition's counters, then its trackers (same
        changelog partition, so a crash keeps a prefix: see PartitionStats). The caller
        acks the messages once the futures are done (``commit_events``), so an offset is
        committed only after the broker has its effects.
        """
        pending = self._pending1
        futures = self._futures1
        if not pending:
            return [], []
        rt = self.rt
        send = self.topics.segments.send_soon
        part_svc = rt.service_partition
        for name, segs in self._fanout.items():
            futures.append(send(key=name, value=orjson.dumps(segs), partition=part_svc(name)))
        for p, (stats, ev) in self._stats_by_part.items():
            rt.stats.put(stats_key(p), stats, ev)
        futures += rt.stats.flush()
        futures += rt.components.flush(self._prune_component)
        self._pending1 = []
        self._futures1 = []
        self._fanout = {}
        self._stats_by_part = {}
        rt.counters.batches += 1
        rt.counters.events += len(pending)
        return pending, futures

    async def commit_events(self) -> int:
        """Flush stage 1, wait for the broker's acks, then ack the input messages."""
        pending, futures = self.flush_events()
        return await _ack_when_sent(pending, futures)

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
        headers = [
            (H_REASON, reason.encode()),
            (H_TOPIC, str(msg.topic).encode()),
            (H_PARTITION, str(msg.partition).encode()),
            (H_OFFSET, str(msg.offset).encode()),
        ]
        key, value = msg.key, msg.value
        size = len(key or b"") + len(value or b"")
        limit = max(DLQ_HEADROOM, int(self.topics.dlq.app.conf.producer_max_request_size) - DLQ_HEADROOM)
        if size > limit:
            # A message larger than the producer may send would crash the worker on
            # every restart (it is never acked). Keep its head; the source
            # topic/partition/offset headers point at the original.
            headers.append((H_TRUNCATED, str(size).encode()))
            key = key[:1024] if key else key
            value = (value or b"")[: limit - 1024]
        fut = self.topics.dlq.send_soon(key=key, value=value, headers=headers)
        self._futures1.append(fut)

    def _reroute(self, ev: Any, comp: str) -> None:
        """Forward a message that arrived on the wrong partition to the right one.

        The original bytes travel unchanged; they are classified and counted once,
        where they land, so the component's history stays in one partition.
        """
        rt = self.rt
        rt.counters.rerouted += 1
        self._futures1.append(self.topics.reroute.send_soon(
            key=comp.encode(), value=ev.message.value, partition=rt.component_partition(comp)
        ))

    def _prune_component(self, key: str, tracker: ComponentTracker) -> None:
        now = time.time()
        if now - self._pruned.get(key, 0.0) >= PRUNE_EVERY:
            self._pruned[key] = now
            tracker.prune(now - self.rt.retention, self.rt.settings.allowed_lateness)

    # -- stage 2 -------------------------------------------------------------------

    async def process_segments(self, events: Sequence[Any]) -> None:
        """Apply a batch of segment messages to the service trackers, then commit."""
        for ev in events:
            self.handle_segment(ev)
        await self.commit_segments()

    @property
    def pending_segments(self) -> int:
        return len(self._pending2)

    def handle_segment(self, ev: Any) -> None:
        """Apply one segment message; the tracker is written at ``flush_segments``."""
        self._pending2.append(ev)
        set_current_event(ev)
        key = ev.key
        name = key.decode() if isinstance(key, bytes) else str(key)
        model = self.rt.catalog.models.get(name)
        if model is None:
            return  # the service left the catalog since this was sent
        svcs = self.rt.services
        tracker = svcs.get(name)
        if tracker is None:
            tracker = ServiceTracker(name)
            svcs.put(name, tracker, ev)
        for obj in orjson.loads(ev.message.value):
            tracker.apply(Segment.from_obj(obj), model)
        svcs.touch(name, ev)

    def flush_segments(self) -> tuple[list[Any], list[Any]]:
        """Write each changed service tracker once; returns (messages, send futures)."""
        pending = self._pending2
        if not pending:
            return [], []
        futures = self.rt.services.flush(self._prune_service)
        self._pending2 = []
        return pending, futures

    async def commit_segments(self) -> int:
        pending, futures = self.flush_segments()
        return await _ack_when_sent(pending, futures)

    async def commit(self) -> None:
        """Flush and ack both stages (before a rebalance takes partitions away)."""
        await self.commit_events()
        await self.commit_segments()

    def _prune_service(self, key: str, tracker: ServiceTracker) -> None:
        now = time.time()
        pkey = "s:" + key
        if now - self._pruned.get(pkey, 0.0) >= PRUNE_EVERY:
            self._pruned[pkey] = now
            tracker.prune(now - self.rt.retention)


async def _ack_when_sent(pending: list[Any], futures: list[Any]) -> int:
    """Ack ``pending`` input messages once every output future is done.

    If a send failed, the exception propagates (the agent restarts) and the messages
    stay unacked, so Kafka redelivers them: at-least-once, never at-most-once.
    """
    if futures:
        await asyncio.gather(*futures)
    for ev in pending:
        ev.ack()
    return len(pending)


def _queue_of(stream: Any) -> Any:
    """The in-memory queue that feeds ``stream`` (None if Faust changes its internals)."""
    queue = getattr(getattr(stream, "channel", None), "queue", None)
    return queue if hasattr(queue, "empty") else None


def install_agents(app: Any, rt: Runtime, topics: Any) -> Pipeline:
    """Register both agents on ``app``; returns the pipeline (for stats and tests).

    Batching is done here rather than with Faust's ``take_events``: at shutdown that
    helper restores auto-acks while its background drainer still runs, and the drainer
    then acks buffered messages that were never processed (they were lost across a
    SIGTERM restart in our tests). Here a message is acked only by ``flush_*``, after
    its effects were written. A batch ends when it is full or when no further message
    is waiting, so under load batches grow, idle latency stays at one message, and
    nothing is left unacked when Faust stops the flow (it waits for all acks before a
    rebalance or shutdown completes).
    """
    pipeline = Pipeline(rt, topics)
    size = rt.settings.batch_size
    recovery = app.tables.recovery

    async def recovered() -> None:
        """Wait until the tables are restored before touching them.

        At start-up Faust can deliver messages before it has applied the recovered
        changelog and sought to the committed offsets (seen: ~70 ms); handled in that
        window they would read empty trackers and counters and then overwrite the
        recovered ones. ``completed`` is set once, after the first recovery and seek;
        what arrived early is delivered again after the seek. (Faust never clears it,
        so later rebalances are not covered by this guard.)
        """
        waited = 0.0
        while (recovery.in_recovery or not recovery.completed.is_set()) and waited < 30.0:
            await asyncio.sleep(0.02)
            waited += 0.02

    async def component_events(stream: Any) -> None:
        events = stream.noack()
        queue = _queue_of(events)
        async for ev in events.events():
            if recovery.in_recovery or not recovery.completed.is_set():
                await recovered()
            pipeline.handle_event(ev)
            if len(pipeline._pending1) >= size or queue is None or queue.empty():
                await pipeline.commit_events()

    async def service_segments(stream: Any) -> None:
        events = stream.noack()
        queue = _queue_of(events)
        async for ev in events.events():
            if recovery.in_recovery or not recovery.completed.is_set():
                await recovered()
            pipeline.handle_segment(ev)
            if len(pipeline._pending2) >= size or queue is None or queue.empty():
                await pipeline.commit_segments()

    app.agent(topics.events_in, name="slawatch.component_events")(component_events)
    app.agent(topics.segments, name="slawatch.service_segments")(service_segments)
    return pipeline
