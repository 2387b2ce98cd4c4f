"""Bytes per stored state change: the engine's history in memory and as stored, not a test.

Applies an alert storm (every event a state change) to the pure engine in batches, as
the pipeline's two stages do, over the sweep's shape catalogs, and measures what each
change adds: the Python objects the trackers hold (tracemalloc of the live heap) and the
bytes the changelogs store (``agents/worker/state.py``'s encoders of every tracker).
The worker holds both: the decoded trackers and the tables' stored values.

    .venv/bin/python bench/memory.py                          # 2,000 comps, size 10, fan-out 2
    .venv/bin/python bench/memory.py --size 2 --components 400
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from agents.worker.state import encode_component, encode_service
from bench.throughput import make_events, make_shape_catalog
from streams.catalog import parse_catalog
from streams.engine import Engine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--components", type=int, default=2000)
    ap.add_argument("--size", type=int, default=10)
    ap.add_argument("--fanout", type=int, default=2)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--at-rest", action="store_true",
                    help="instead: bytes per component and service of a catalog and its "
                         "trackers after one change of each component")
    opts = ap.parse_args()
    if opts.at_rest:
        return at_rest(opts)
    catalog = parse_catalog(orjson.loads(make_shape_catalog(opts.components, opts.size,
                                                            opts.fanout)), "bench")
    now = time.time()
    msgs = [v for _, v in make_events(opts.events, opts.components, 1.0, now - 7200)]
    engine = Engine(catalog)
    half = len(msgs) // 2
    gc.collect()
    tracemalloc.start()

    def measure() -> tuple[int, int, int]:
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0]
        stored = sum(len(encode_component(t)) for t in engine.components.values())
        stored += sum(len(encode_service(t)) for t in engine.services.values())
        svc_pts = sum(len(t.timeline) for t in engine.services.values())
        return heap, stored, svc_pts

    for lo in range(0, half, opts.batch):
        engine.apply_raw_many(msgs[lo:lo + opts.batch], now)
    h1, s1, v1 = measure()
    for lo in range(half, len(msgs), opts.batch):
        engine.apply_raw_many(msgs[lo:min(lo + opts.batch, len(msgs))], now)
    h2, s2, v2 = measure()
    tracemalloc.stop()
    changes = len(msgs) - half  # every event of the storm is a state change
    print(f"{opts.components} components, services of {opts.size}, fan-out {opts.fanout}: "
          f"{len(catalog.services)} services; {changes:,} state changes measured "
          f"(after {half:,})")
    print(f"  service timeline points added: {v2 - v1:,} ({(v2 - v1) / changes:.2f} a change)")
    print(f"  heap (trackers' objects):  {(h2 - h1) / changes:7.1f} bytes a change")
    print(f"  stored (changelog values): {(s2 - s1) / changes:7.1f} bytes a change")
    print(f"  together:                  {(h2 - h1 + s2 - s1) / changes:7.1f} bytes a change")
    return 0


def at_rest(opts: argparse.Namespace) -> int:
    """Heap of the catalog (every service's model built, as the worker's first segments
    build them) and of the trackers after each component changed once."""
    now = time.time()
    raw = orjson.loads(make_shape_catalog(opts.components, opts.size, opts.fanout))
    msgs = [orjson.dumps({"component": f"c{i}", "state": "down", "ts": now - 60})
            for i in range(opts.components)]
    gc.collect()
    tracemalloc.start()
    catalog = parse_catalog(raw, "bench")
    for name in catalog.services:
        catalog.models.get(name)
    gc.collect()
    h1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracemalloc.start()
    engine = Engine(catalog)
    for lo in range(0, len(msgs), opts.batch):
        engine.apply_raw_many(msgs[lo:lo + opts.batch], now)
    gc.collect()
    h2 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stored = sum(len(encode_component(t)) for t in engine.components.values())
    stored += sum(len(encode_service(t)) for t in engine.services.values())
    nc, ns = opts.components, len(catalog.services)
    print(f"{nc} components, {ns} services of {opts.size}, fan-out {opts.fanout}")
    print(f"  catalog and models: {h1 / 1e6:6.1f} MB")
    print(f"  trackers:           {h2 / 1e6:6.1f} MB, stored {stored / 1e6:.1f} MB")
    print(f"  per component (its share of the services included): "
          f"{(h1 + h2 + stored) / nc:,.0f} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
