"""The CPU of the worker's checkpoints on a sweep shape: the trackers' writes and the
changelog sends, through a real aiokafka producer to the embedded broker.

A sweep point's events are replayed through the engine (no Kafka), ``--per-checkpoint``
events between two checkpoints; at each checkpoint every tracker changed since the last
one is written by ``TrackerTable.flush`` into 8 table partitions (the worker's
partitioner), its records sent to a changelog topic on the embedded tansu broker, and
the checkpoint waits for their delivery, as the worker does. Two ways alternate at each
checkpoint, each over its own tables fed the same trackers' records: "record" one
``producer.send`` per record (as the worker sent checkpoints before), "batch" record
batches per partition (``Pipeline.send_many``). Prints per way the CPU seconds of the
flushes (this process: the producer's sender task runs on the same loop), per
checkpoint and per tracker written.

    .venv/bin/python bench/checkpoint.py --sweep-only base --sweep-only fanout=5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from agents.clients.broker import EmbeddedBroker  # noqa: E402
from agents.settings import WorkerSettings  # noqa: E402
from agents.worker.partitioning import Partitioner  # noqa: E402
from agents.worker.pipeline import Pipeline  # noqa: E402
from agents.worker.state import (  # noqa: E402
    TrackerTable,
    decode_component,
    decode_service,
)
from bench.throughput import _shape_label, make_events, make_shape_catalog, sweep_shapes  # noqa: E402
from streams.catalog import parse_catalog  # noqa: E402
from streams.component import ComponentTracker  # noqa: E402
from streams.engine import Engine  # noqa: E402
from streams.service import ServiceTracker  # noqa: E402
from tests.fake_tables import FakeRuntime, PipelineTopics, Table  # noqa: E402

PARTITIONS = 8


def _points(tracker: Any) -> int:
    """Grows with every change of the tracker (a storm changes a state per event)."""
    return len(tracker.timeline if isinstance(tracker, ServiceTracker) else tracker.history)


def _tables(topic: str) -> tuple[TrackerTable[Any], TrackerTable[Any]]:
    comps = TrackerTable(Table(changelog=topic + "-c"), decode_component, lambda t: b"",
                         ComponentTracker.to_record, ComponentTracker.from_record,
                         ComponentTracker.small_records)
    svcs = TrackerTable(Table(changelog=topic + "-s"), decode_service, lambda t: b"",
                        ServiceTracker.to_record, ServiceTracker.from_record)
    return comps, svcs


async def run(shape: dict[str, Any], per_cp: int, bootstrap: str, events_n: int) -> dict[str, list[float]]:
    catalog = parse_catalog(orjson.loads(make_shape_catalog(
        shape["components"], shape["size"], shape["fanout"])), "bench")
    events = [v for _, v in make_events(events_n or shape["events"], shape["components"],
                                         shape["change"], time.time() - 7200)]
    part = Partitioner(PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), Table())
    pipeline = Pipeline(rt, PipelineTopics(), lambda *a: producer.send(a[0], a[2], a[1], partition=a[3]))
    pipeline.raw_producer = lambda: producer

    async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        return await producer.send(topic, value, key=key, partition=partition)

    ways = {"record": _tables("bench-record"), "batch": _tables("bench-batch")}
    cpu: dict[str, list[float]] = {w: [] for w in ways}
    wall: dict[str, list[float]] = {w: [] for w in ways}
    written: dict[str, int] = dict.fromkeys(ways, 0)
    # An engine per way: a write marks in the trackers what it wrote (the next one
    # sends patches from there), so each way writes its own, fed the same events.
    engines = {w: Engine(catalog, allowed_lateness=600.0) for w in ways}
    seen: dict[str, dict[str, int]] = {w: {} for w in ways}
    try:
        for k in range(0, len(events), per_cp):
            batch = events[k:k + per_cp]
            now = orjson.loads(batch[-1])["ts"] + 1
            order = list(ways) if (k // per_cp) % 2 == 0 else list(reversed(ways))
            for way in order:
                engine = engines[way]
                engine.apply_raw_many(batch, now)
                comps, svcs = ways[way]
                n = 0
                for table, trackers in ((comps, engine.components), (svcs, engine.services)):
                    for name, tracker in trackers.items():
                        m = _points(tracker)
                        if m != seen[way].get(name):
                            seen[way][name] = m
                            table.put(name, tracker, part(name))
                            n += 1
                t0, w0 = time.process_time(), time.perf_counter()
                futures = []
                for table in (comps, svcs):
                    if way == "batch":
                        futures += await table.flush(send, send_many=pipeline.send_many)
                    else:
                        futures += await table.flush(send)
                if futures:
                    await asyncio.gather(*futures)
                cpu[way].append(time.process_time() - t0)
                wall[way].append(time.perf_counter() - w0)
                written[way] += n
    finally:
        await producer.stop()
    return {w: [sum(cpu[w]), sum(cpu[w]) / max(1, len(cpu[w])), sum(cpu[w]) / max(1, written[w]),
                sum(wall[w]) / max(1, len(wall[w]))]
            for w in ways}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE")
    ap.add_argument("--per-checkpoint", type=int, default=20000,
                    help="events between two checkpoints (the worker: 0.5 s of the backlog)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--events", type=int, default=0, help="events (default: the shape's)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        topics = {f"bench-{w}-{t}": PARTITIONS for w in ("record", "batch") for t in "cs"}
        broker.create_topics(topics)
        print(f"{'shape':<58} {'way':>6} {'CPU s':>7} {'ms/cp':>7} {'us/tracker':>10} "
              f"{'wall ms/cp':>10}")
        for shape in sweep_shapes(opts.sweep_only or ["base"]):
            runs = [asyncio.run(run(shape, opts.per_checkpoint, broker.bootstrap, opts.events))
                    for _ in range(opts.repeat)]
            for way in ("record", "batch"):
                cols = [statistics.median(r[way][i] for r in runs) for i in range(4)]
                print(f"{_shape_label(shape):<58} {way:>6} {cols[0]:>7.3f} {cols[1] * 1e3:>7.1f} "
                      f"{cols[2] * 1e6:>10.1f} {cols[3] * 1e3:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
