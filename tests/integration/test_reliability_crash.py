"""Crash recovery: SIGKILL the worker at seeded random points while events stream in,
and a wholesale redelivery that must change nothing.

``test_sigkill_five_times_under_load``: a publisher thread sends a messy stream
(duplicates, late, invalid, unmapped) of 100,000 events at 2,500 events/s; the worker is
SIGKILLed five times at seeded random moments (alternately 0.5-4 s after it became
ready, and 1-10 s after its start, i.e. possibly while joining or recovering) and
restarted at once. After the stream, every series of /metrics must equal the pure engine
fed the same messages once, in publish order, and ``slawatch_events_total`` must add up
to the messages published: nothing lost, nothing counted twice.

``test_full_redelivery_changes_nothing``: after a clean pass, the group's committed
offsets on the input and segments topics are rewound to 0 and the whole stream is
consumed again. Every number must stay as it was (segments are idempotent overwrites,
the per-partition origin marks keep the counters from counting twice), and the DLQ still
holds every rejected message exactly once.

Every SIGKILL costs 10-25 s (the dead member's 10 s session timeout, the rejoin, the
changelog recovery), during which the publisher goes on: the backlog is worked off after
each restart.

Jitter 0: stage 2 sees segments from four partitions in an interleaving that differs
from the publish order; with events in order per component the result is independent of
that interleaving (with out-of-order events the never-decreasing counters may differ,
see DESIGN.md, "Semantic choices", counters).
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import pytest

from agents.worker.partitioning import Partitioner
from tests.exact_reference import dlq_multiset
from tests.fixtures_kafka import ExampleEstate, counted, publish_messages, wait_counted
from tests.reliability_helpers import RatePublisher, read_all, wait_equal, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 100_000
REPLAY_EVENTS = 10_000
RATE = 2_500.0
KILLS = 5
SEED = 20240611


def _rewind_group(bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
    """Commit offset 0 for ``group`` on every partition of ``topics`` (group must be empty)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import CommitFailedError
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        consumer.assign(tps)
        # The coordinator may still hold the stopped worker as a member for a moment
        # (UnknownMemberId to a standalone commit); it is empty once the leave is done.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
                break
            except CommitFailedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        got = {tp: consumer.committed(tp) for tp in tps}
        assert all(v == 0 for v in got.values()), got
    finally:
        consumer.close()


def _committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of ``group``'s committed offsets on ``topic``."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return sum(om.offset for tp, om in offsets.items() if tp.topic == topic and om.offset >= 0)


def test_sigkill_five_times_under_load(example_estate: ExampleEstate, worker_factory: Any
                                       ) -> None:
    broker, catalog = example_estate.broker, example_estate.catalog
    messages = example_estate.messages(EVENTS, seed=SEED, span=4 * 3600.0)
    engine, reasons = example_estate.reference(messages)
    rnd = random.Random(SEED)

    worker = worker_factory(broker, catalog)
    worker.wait_ready(timeout=40)
    publisher = RatePublisher(broker, messages, RATE).start()
    kills: list[tuple[float, int, float]] = []  # (s into the stream, published, counted)
    t0 = time.monotonic()
    for i in range(KILLS):
        if i % 2 == 0:
            worker.wait_ready(timeout=60)  # a kill while processing ...
            time.sleep(rnd.uniform(0.5, 4.0))
        else:
            time.sleep(rnd.uniform(1.0, 10.0))  # ... or while joining/recovering
        try:
            seen = counted(worker.scrape())
        except (OSError, AssertionError):
            seen = -1.0
        kills.append((round(time.monotonic() - t0, 1), publisher.published, seen))
        worker.stop(signal.SIGKILL)
        worker.start()
    print(f"\nkills (s into the stream, published, counted): {kills}")
    still_flowing = [k for k in kills if k[1] < len(messages)]
    assert len(still_flowing) >= 3, f"the kills should land while publishing: {kills}"
    publisher.join(timeout=120)
    assert worker.starts == KILLS + 1
    took = wait_counted(worker, len(messages), timeout=90)
    # The brute-force reference takes ~9 s per evaluation of 100,000 events.
    samples = wait_equal([worker], engine, timeout=90)
    print(f"caught up {took:.1f} s after the last restart; run {time.monotonic() - t0:.1f} s")
    assert counted(samples) == len(messages)
    # Every rejected message is in the DLQ once, with its reason, and nothing else is.
    dlq = read_all(broker, "component-events-dlq", idle=2.0)
    got = dlq_multiset(dlq)
    assert got == engine.dlq, (f"extra {list((got - engine.dlq).items())[:5]}, "
                               f"missing {list((engine.dlq - got).items())[:5]}")
    print(f"DLQ: {len(dlq)} records for {len(reasons)} rejected messages")


def test_full_redelivery_changes_nothing(example_estate: ExampleEstate, worker_factory: Any
                                         ) -> None:
    """Rewind the group to offset 0: the whole stream is delivered again, nothing moves."""
    broker, catalog = example_estate.broker, example_estate.catalog
    messages = example_estate.messages(REPLAY_EVENTS, seed=SEED + 1, span=4 * 3600.0)
    # mx-3's events come from a producer with another partitioner: the worker
    # re-routes them, and must not re-route (and count) them again on the replay.
    wrong = (Partitioner(4)("mx-3") + 1) % 4
    messages = [(k, v, wrong) if k == b"mx-3" else (k, v, p) for k, v, p in messages]
    assert sum(1 for m in messages if m[2] == wrong) > 100
    engine, reasons = example_estate.reference(messages)
    publish_messages(broker, messages)
    worker = worker_factory(broker, catalog)
    wait_counted(worker, len(messages), timeout=60)
    before = wait_equal([worker], engine, timeout=30)
    end = len(messages)
    wait_for(lambda: _committed_total(broker.bootstrap, worker.app_id, "component-events") >= end,
             30, "the first pass to be committed", interval=0.5)
    dlq = read_all(broker, "component-events-dlq", idle=2.0)
    assert dlq_multiset(dlq) == engine.dlq

    assert worker.stop(signal.SIGTERM) == 0, worker.log_tail()  # leaves: the group is empty
    _rewind_group(broker.bootstrap, worker.app_id,
                  ["component-events", f"{worker.app_id}-service-segments"], 4)
    assert _committed_total(broker.bootstrap, worker.app_id, "component-events") == 0
    worker.start()
    worker.wait_ready(timeout=60)
    try:
        replay = wait_for(
            lambda: _committed_total(broker.bootstrap, worker.app_id, "component-events") >= end,
            120, "the replay to reach the end of component-events", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"replay stalled: {exc}\n{worker.log_tail()}") from exc
    after = wait_equal([worker], engine, timeout=60)
    # The stream was read again (the commit reached the end a second time), but the
    # DLQ still holds each rejected message once: the partition's offset ranges say
    # it was dead-lettered already. (A redelivered event older than its component's
    # newest ts minus the allowed lateness is classified `late` on replay; it is
    # neither counted nor dead-lettered again.)
    dlq2 = read_all(broker, "component-events-dlq", idle=2.0)
    assert dlq_multiset(dlq2) == engine.dlq, "a redelivered message was dead-lettered twice"
    assert counted(after) == len(messages), "a redelivered message was counted twice"
    changed = {k for k in before if k in after and "window" not in dict(k[1])
               and not k[0].endswith(("_seconds", "_ratio", "burn_rate")) and before[k] != after[k]}
    assert not changed, f"counters moved on redelivery: {sorted(changed, key=str)[:5]}"
    print(f"\nfull redelivery of {end} messages read again in {replay:.1f} s; every number "
          f"as before; DLQ {len(dlq)} -> {len(dlq2)} records ({len(reasons)} rejected once)")
