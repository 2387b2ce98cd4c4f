"""What the worker's checkpoints write in a storm, against the events they cover.

A checkpoint writes every tracker changed since the last one (agents/worker/state.py
``TrackerTable.flush``). This replays a sweep point's events through the engine (no
Kafka), ``--per-checkpoint`` events between two checkpoints, and adds up the bytes the
component and service changelogs get, next to the bytes of the events: "whole" as
``TrackerTable.flush`` sent before incremental writes (every changed tracker's whole
record, the table without ``pack``), "incr" as it sends now (heads and the patches of
what changed, agents/worker/patchlog.py), the last checkpoint of each (the largest,
late in the storm), and the CPU seconds of the two flushes (alternated at each
checkpoint, same trackers).

    .venv/bin/python bench/writes.py --sweep-only fanout=5 --per-checkpoint 2000 20000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.worker.state import (  # noqa: E402
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
)
from bench.throughput import _shape_label, make_events, make_shape_catalog, sweep_shapes  # noqa: E402
from streams.catalog import parse_catalog  # noqa: E402
from streams.component import ComponentTracker  # noqa: E402
from streams.engine import Engine  # noqa: E402
from streams.service import ServiceTracker  # noqa: E402
from tests.fake_tables import Table  # noqa: E402


def flushed_bytes(table: TrackerTable[Any]) -> tuple[int, float]:
    """Write the table's dirty trackers; returns the bytes of keys and values sent, and
    the CPU seconds of the flush."""
    sent = 0

    async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        nonlocal sent
        sent += len(key) + len(value or b"")
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def go() -> None:
        await table.flush(send)

    loop = asyncio.new_event_loop()
    try:
        t0 = time.process_time()
        loop.run_until_complete(go())
        return sent, time.process_time() - t0
    finally:
        loop.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE",
                    help="sweep points as in bench/throughput.py (default: every point)")
    ap.add_argument("--per-checkpoint", type=int, nargs="+", default=[2000, 20000],
                    help="events between two checkpoints")
    ap.add_argument("--incremental-from", type=int, default=None, metavar="BYTES",
                    help="the tables' incremental_from (default: agents/worker/patchlog.py's)")
    opts = ap.parse_args()
    every = sweep_shapes()
    print(f"{'shape':<58} {'events/cp':>9} {'events MB':>9} {'whole MB':>9} {'incr MB':>8} "
          f"{'whole x':>7} {'incr x':>6} {'last cp whole MB':>16} {'last cp incr MB':>15} "
          f"{'whole CPU s':>11} {'incr CPU s':>10}")
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
            tables = {
                "whole": (TrackerTable(Table(), decode_component, encode_component),
                          TrackerTable(Table(), decode_service, encode_service)),
                "incr": (TrackerTable(Table(), decode_component, encode_component,
                                      ComponentTracker.to_record, ComponentTracker.from_record),
                         TrackerTable(Table(), decode_service, encode_service,
                                      ServiceTracker.to_record, ServiceTracker.from_record)),
            }
            if opts.incremental_from is not None:
                for t in tables["incr"]:
                    t.incremental_from = opts.incremental_from
            total = dict.fromkeys(tables, 0)
            last = dict.fromkeys(tables, 0)
            cpu = dict.fromkeys(tables, 0.0)
            for n, k in enumerate(range(0, len(raws), per)):
                for lo in range(k, min(len(raws), k + per), 2000):  # fetches of 2,000
                    engine.apply_raw_many(raws[lo:min(lo + 2000, k + per)], now)
                touched = {c for c in comps_of[k:k + per] if c in engine.components}
                services = {s for c in touched for s in catalog.services_for(c)
                            if s in engine.services}
                order = list(tables) if n % 2 == 0 else list(reversed(tables))
                for name in order:  # alternated; neither changes the trackers
                    comp_table, svc_table = tables[name]
                    for c in touched:
                        comp_table.put(c, engine.components[c], 0)
                    for s in services:
                        svc_table.put(s, engine.services[s], 0)
                    (cb, cc), (sb, sc) = flushed_bytes(comp_table), flushed_bytes(svc_table)
                    last[name] = cb + sb
                    total[name] += cb + sb
                    cpu[name] += cc + sc
            whole, incr, last_whole, last_incr = total["whole"], total["incr"], last["whole"], last["incr"]
            events = sum(map(len, raws))
            print(f"{_shape_label(shape):<58} {per:>9,} {events / 1e6:>9.1f} "
                  f"{whole / 1e6:>9.1f} {incr / 1e6:>8.1f} {whole / events:>7.1f} "
                  f"{incr / events:>6.2f} {last_whole / 1e6:>16.2f} {last_incr / 1e6:>15.3f} "
                  f"{cpu['whole']:>11.2f} {cpu['incr']:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
