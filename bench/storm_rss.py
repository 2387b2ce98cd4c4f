"""Worker RSS after a long alert storm, and its growth per stored state change; not a test.

``throughput.py --events 3000000`` measures this too, but holds every message (and the
raw client's batches) in its own process: 12 GiB at 3M events, which the kernel's OOM
killer stopped on this shared machine. This publishes the same events (the same
catalog, generator and seed) in chunks, runs no raw baseline, and reads the worker's
RSS (now and peak) after the backlog, then after one ``/metrics`` scrape (which builds
the prefix sums and the attribution index a Prometheus would make it build). The RSS
of the worker when ready, before any event, is subtracted for the growth per change.

    .venv/bin/python bench/storm_rss.py                       # 3M events, 400/400, fan-out 2
    .venv/bin/python bench/storm_rss.py --events 1000000
    .venv/bin/python bench/storm_rss.py --scale           # throughput.py's --scale part alone
    .venv/bin/python bench/storm_rss.py --scale --tree /work/wtbase   # another checkout's worker
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from agents.clients.broker import EmbeddedBroker
from agents.worker.partitioning import Partitioner
from bench.throughput import (
    Worker,
    iter_events,
    make_catalog,
    pipeline_rate,
    publish,
    scale_run,
    wait_pipeline,
)


def event_chunks(n: int, components: int, change_ratio: float, start: float, chunk: int,
                 seed: int = 1) -> Iterator[list[tuple[bytes, bytes]]]:
    """``throughput.make_events``, the same events, ``chunk`` at a time."""
    events = iter_events(n, components, change_ratio, start, seed)
    while out := list(itertools.islice(events, chunk)):
        yield out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--components", type=int, default=400)
    ap.add_argument("--services", type=int, default=400)
    ap.add_argument("--fanout", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--change-ratio", type=float, default=1.0)
    ap.add_argument("--chunk", type=int, default=200_000)
    ap.add_argument("--scale", action="store_true",
                    help="instead: RSS and scrape time of 100k components / 10k services "
                         "(throughput.py --scale without its other parts)")
    ap.add_argument("--scale-components", type=int, default=100_000)
    ap.add_argument("--scale-services", type=int, default=10_000)
    ap.add_argument("--tree", type=Path,
                    help="--scale: the worker of another checkout (its own .venv), for A/B")
    opts = ap.parse_args()
    if opts.scale:
        work = Path(tempfile.mkdtemp(prefix="slawatch-scale-"))
        with EmbeddedBroker(log_path=work / "broker.log") as broker:
            for k, v in scale_run(broker, work, opts):
                print(f"{k:<42}  {v}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="slawatch-storm-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(make_catalog(opts.components, opts.services, opts.fanout, 0))
    topic = "component-events"
    part = Partitioner(opts.partitions)
    ends: dict[int, int] = {}
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        broker.create_topics({topic: opts.partitions})
        t0 = time.monotonic()
        for msgs in event_chunks(opts.events, opts.components, opts.change_ratio,
                                 time.time() - 7200, opts.chunk):
            publish(broker, topic, opts.partitions, msgs)
            for key, _ in msgs:
                p = part(key.decode())
                ends[p] = ends.get(p, 0) + 1
        print(f"published {opts.events:,} events in {time.monotonic() - t0:.0f} s", flush=True)
        w = Worker(broker, catalog, work, opts.partitions, "storm")
        try:
            w.wait_ready()
            idle, _ = w.rss()
            st = wait_pipeline(w, topic, w.segments_topic, ends, timeout=3600)
            stats = st["stats"]
            rate = pipeline_rate(opts.events, stats)
            cur, peak = w.rss()
            w.get("/metrics", timeout=300)
            cur2, peak2 = w.rss()
        finally:
            w.stop()
    print(f"{opts.events:,} events over {opts.components} components, {opts.services} services "
          f"(fan-out {opts.fanout}), change ratio {opts.change_ratio}, {opts.partitions} partitions")
    print(f"  pipeline: {rate:,.0f} events/s")
    print(f"  worker RSS when ready:            {idle:7.0f} MiB")
    print(f"  after the backlog, now / peak:    {cur:7.0f} / {peak:.0f} MiB")
    print(f"  after a /metrics scrape, now / peak: {cur2:4.0f} / {peak2:.0f} MiB")
    changes = opts.events * opts.change_ratio
    print(f"  growth per stored change (now, after the scrape): "
          f"{(cur2 - idle) * 1048576 / changes:.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
