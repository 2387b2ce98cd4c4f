"""What the worker's checkpoints write in a storm, against the events they cover.

A checkpoint writes every tracker changed since the last one, whole (agents/worker/
state.py ``TrackerTable.flush``): late in a storm each service's write carries its
whole history again. This replays a sweep point's events through the engine (no
Kafka), ``--per-checkpoint`` events between two checkpoints, and adds up the bytes the
component and service changelogs would get, next to the bytes of the events.

    .venv/bin/python bench/writes.py --sweep-only fanout=5 --per-checkpoint 2000 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.worker.state import encode_component, encode_service  # noqa: E402
from bench.throughput import _shape_label, make_events, make_shape_catalog, sweep_shapes  # noqa: E402
from streams.catalog import parse_catalog  # noqa: E402
from streams.engine import Engine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE",
                    help="sweep points as in bench/throughput.py (default: every point)")
    ap.add_argument("--per-checkpoint", type=int, nargs="+", default=[2000, 20000],
                    help="events between two checkpoints")
    opts = ap.parse_args()
    every = sweep_shapes()
    print(f"{'shape':<58} {'events/cp':>9} {'events MB':>9} {'services MB':>11} "
          f"{'components MB':>13} {'x events':>8}")
    for shape in sweep_shapes(opts.sweep_only):
        index = every.index(shape)  # the same seed as the sweep: the same events
        catalog = parse_catalog(orjson.loads(make_shape_catalog(
            shape["components"], shape["size"], shape["fanout"])), "bench")
        msgs = make_events(shape["events"], shape["components"], shape["change"],
                           time.time() - 7200, seed=index + 1)
        raws = [v for _, v in msgs]
        comps_of = [orjson.loads(v)["component"] for v in raws]
        now = time.time()
        for per in opts.per_checkpoint:
            engine = Engine(catalog, allowed_lateness=600.0)
            svc_bytes = comp_bytes = 0
            for k in range(0, len(raws), per):
                for lo in range(k, min(len(raws), k + per), 2000):  # fetches of 2,000
                    engine.apply_raw_many(raws[lo:min(lo + 2000, k + per)], now)
                touched = set(comps_of[k:k + per])
                services = {s for c in touched for s in catalog.services_for(c)}
                comp_bytes += sum(len(encode_component(engine.components[c]))
                                  for c in touched if c in engine.components)
                svc_bytes += sum(len(encode_service(engine.services[s]))
                                 for s in services if s in engine.services)
            events = sum(map(len, raws))
            print(f"{_shape_label(shape):<58} {per:>9,} {events / 1e6:>9.1f} "
                  f"{svc_bytes / 1e6:>11.1f} {comp_bytes / 1e6:>13.1f} "
                  f"{(svc_bytes + comp_bytes) / events:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
