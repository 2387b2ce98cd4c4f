"""Patches of Faust (faust-streaming) internals, checked against ``versions.TESTED``.

Each patch says why it exists, its upstream issue if one is known, and with which
broker it applies. They are idempotent and applied by ``agents.transport.apply``
before the worker's app is built. ``agents/worker/batching.py`` subclasses Faust's
aiokafka consumer thread and overrides its delivery; it is guarded by the same range.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.transport import versions

log = logging.getLogger("slawatch.transport")

_seek_patched = False


def patch_seek_to_committed() -> None:
    """Make Faust's "seek stream partitions to committed offsets" a real restart point.

    Faust resumes the stream partitions after table recovery and only then awaits
    ``perform_seek``; records fetched in between are handed to the streams (where they
    are dropped: the flow is still suspended, or the queues are cleared) and advance
    the fetch position. aiokafka's ``seek_to_committed`` then moves only partitions
    whose committed offset is > 0, so a partition that was never committed (or was
    committed at 0) keeps the advanced position: the dropped records are never fetched
    again, and once a later offset is acked Faust commits past them. That is how a
    restarted worker lost the segments its predecessor had not yet applied (stage 2
    restarted mid-topic) and how a few counts went missing.

    Here every stream partition is moved explicitly: to its committed offset (also 0),
    or, without one, where ``consumer_auto_offset_reset`` says. Changelog partitions
    are left alone (Recovery positions them). After the seek the consumer forgets the
    acks, gaps and read offsets recorded before it for those partitions: everything
    from the committed offset is delivered again, and only acks of messages processed
    from then on (or processed with recovered tables, which the pipeline waits for)
    can move a commit.
    Upstream: faust-streaming/faust#216 (recovery resumes before seeking to committed).
    Applied with every broker.
    """
    global _seek_patched
    if _seek_patched:
        return
    versions.require("faust-streaming", __name__)
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def seek_to_committed(self: Any) -> Any:
        consumer = self._ensure_consumer()
        changelogs = set(self.app.tables.changelog_topics)
        reset = str(self.app.conf.consumer_auto_offset_reset).lower()

        async def _seek() -> dict[Any, Any]:
            assigned = consumer.assignment()
            committed: dict[Any, Any] = {}
            to_reset: list[Any] = []
            for tp in assigned:
                offset = await consumer.committed(tp)
                committed[tp] = offset
                if tp.topic in changelogs:
                    continue
                if offset is not None and offset >= 0:
                    consumer.seek(tp, offset)
                else:
                    to_reset.append(tp)
            if to_reset:
                if reset == "latest":
                    await consumer.seek_to_end(*to_reset)
                else:
                    await consumer.seek_to_beginning(*to_reset)
            return committed

        return await self.call_thread(_seek)

    original_perform_seek = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        await original_perform_seek(self)
        changelogs = set(self.app.tables.changelog_topics)
        for tp in self.assignment():
            if tp.topic in changelogs:
                continue
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._gap.pop(tp, None)

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    _seek_patched = True


_highwater_patched = False


def patch_highwaters_read_last_batch() -> None:
    """Make the highwaters Faust's table recovery reads up to include the last batch.

    tansu answers ListOffsets(latest) with the base offset of a partition's last record
    batch + 1, not its last offset + 1 (a batch of 5 records at offsets 0..4 gives an
    end offset of 1; measured). Faust recovers a changelog only up to that "highwater",
    so every record of the last changelog batch after its first was never restored: a
    restarted worker lost the tracker and counter writes of its predecessor's last
    batch while the input offsets they belong to were committed. Here the answer is
    verified by reading the batch at ``end - 1``; with Kafka that batch holds exactly
    one record at ``end - 1`` and nothing changes.
    Upstream: none (a broker quirk). Applied only with the embedded broker.
    """
    global _highwater_patched
    if _highwater_patched:
        return
    versions.require("faust-streaming", __name__)
    from aiokafka.structs import TopicPartition
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._highwaters

    async def _highwaters(self: Any, partitions: Any) -> Any:
        ends = dict(await original(self, partitions))
        probe_tps = [tp for tp, end in ends.items() if end]
        if not probe_tps:
            return ends
        probe = self._create_client_consumer(self.transport)
        probe._enable_auto_commit = False
        await probe.start()
        try:
            atps = [TopicPartition(tp.topic, tp.partition) for tp in probe_tps]
            probe.assign(atps)
            for tp, atp in zip(probe_tps, atps, strict=True):
                probe.seek(atp, ends[tp] - 1)
            pending = set(atps)
            for _ in range(20):  # a few fetch rounds at most
                if not pending:
                    break
                batch = await probe.getmany(*pending, timeout_ms=500)
                for atp, records in batch.items():
                    if records:
                        tp = probe_tps[atps.index(atp)]
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                for atp in list(pending):
                    if await probe.position(atp) >= ends[probe_tps[atps.index(atp)]]:
                        pending.discard(atp)
            if pending:
                log.warning("could not verify the end offset of %s", sorted(pending))
        finally:
            await probe.stop()
        return ends

    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    _highwater_patched = True


_fetch_wait_patched = False

#: How long a fetch may wait at the broker for data (ms). Faust hard-codes 1500.
FETCH_MAX_WAIT_MS = 100


def patch_fetch_max_wait(ms: int = FETCH_MAX_WAIT_MS) -> None:
    """Make the worker's fetches wait at most ``ms`` at the broker, not Faust's 1500 ms.

    tansu answers a fetch only when its wait runs out, not when data arrives for
    another partition of the same request (measured: a single event took 0.2-0.7 s to
    reach stage 1 and another 0.7-1.2 s to reach stage 2, one fetch wait per stage). The
    cost of a short wait is an empty fetch every ``ms`` on an idle partition set.
    Faust offers no setting for it. Applied with every broker: a Kafka broker answers
    as soon as data is there, so the shorter wait only bounds an idle fetch.
    """
    global _fetch_wait_patched
    if _fetch_wait_patched:
        return
    versions.require("faust-streaming", __name__)
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    original = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _fetch_wait_patched = True
