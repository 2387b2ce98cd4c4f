"""CPU of the day rollups at the services checkpoint in a storm, in one process.

Replays a sweep point's events (``bench/throughput.py``'s shapes and seeds) through the
engine in fetches of ``--fetch`` records from each of the point's input partitions in
turn (as a worker's fetch brings about as many of each), marks each service with the
earliest event of the fetch that feeds it (stage 2 marks the earliest segment start),
and every ``--per-checkpoint`` events runs what a services checkpoint runs for the
rollups: ``RollupKeeper.update`` and its table's ``flush``. Prints the CPU seconds of
the engine, the update and the flush. No Kafka, no worker: CPU time of this process,
so a loaded machine moves it less than a throughput run.

``--ab TREE`` runs the same replay with TREE's code (its own .venv), alternated
``--rounds`` times, and prints both.

    .venv/bin/python bench/rollups.py --sweep-only base --sweep-only events=1000000 \\
        --per-checkpoint 20000 100000 --rounds 2 --ab /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402


def replay(shape: dict[str, Any], index: int, per: int, fetch: int) -> dict[str, float]:
    """CPU seconds of the engine, the rollup updates and their flushes."""
    # The first flush imports Faust (``state.partition_context``): a worker has it
    # already, so it is imported here, outside the timed flushes.
    import faust.streams  # noqa: F401

    from agents.settings import WorkerSettings
    from agents.worker.rollups import RollupKeeper
    from bench.throughput import make_events, make_shape_catalog
    from streams.catalog import parse_catalog
    from streams.engine import Engine
    from tests.fake_tables import FakeRuntime, Table

    cat = parse_catalog(orjson.loads(make_shape_catalog(
        shape["components"], shape["size"], shape["fanout"])), "bench")
    msgs = make_events(shape["events"], shape["components"], shape["change"],
                       time.time() - 7200, seed=index + 1)
    nparts = shape["partitions"]
    parts: list[list[bytes]] = [[] for _ in range(nparts)]
    for k, v in msgs:
        parts[zlib.crc32(k) % nparts].append(v)
    engine = Engine(cat, allowed_lateness=600.0)
    rt = FakeRuntime(WorkerSettings(), cat)

    class Services:  # what RollupKeeper.update reads of the services table
        def get(self, name: str) -> Any:
            return engine.services.get(name)

    rt.services = Services()  # type: ignore[assignment]
    keeper = RollupKeeper(rt, Table())
    rev = cat.reverse_index

    async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    loop = asyncio.new_event_loop()
    cpu = {"engine": 0.0, "update": 0.0, "flush": 0.0, "checkpoints": 0.0}
    pos = 0
    since = 0
    now = time.time()
    longest = max(map(len, parts))
    while pos < longest:
        batch = [v for p in parts for v in p[pos:pos + fetch]]
        pos += fetch
        t0 = time.process_time()
        engine.apply_raw_many(batch, now)
        cpu["engine"] += time.process_time() - t0
        first: dict[str, float] = {}
        for v in batch:
            o = orjson.loads(v)
            for s in rev.get(o["component"], ()):
                if o["ts"] < first.get(s, float("inf")):
                    first[s] = o["ts"]
        for s, t in first.items():
            keeper.mark(s, [t])
        since += len(batch)
        if since >= per or pos >= longest:
            since = 0
            t0 = time.process_time()
            keeper.update()
            t1 = time.process_time()
            loop.run_until_complete(keeper.flush(send))
            cpu["update"] += t1 - t0
            cpu["flush"] += time.process_time() - t1
            cpu["checkpoints"] += 1
    loop.close()
    return cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE")
    ap.add_argument("--per-checkpoint", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--fetch", type=int, default=500, help="records of each partition a fetch")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ab", type=Path, default=None, metavar="TREE")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "index,per": one replay, JSON out
    opts = ap.parse_args()
    from bench.throughput import _shape_label, sweep_shapes

    every = sweep_shapes()
    if opts.one:
        index, per = map(int, opts.one.split(","))
        print(json.dumps(replay(every[index], index, per, opts.fetch)))
        return 0
    trees = {"this": Path(__file__).resolve().parents[1]}
    if opts.ab:
        trees["base"] = opts.ab.resolve()
    print(f"{'shape':<58} {'events/cp':>9} {'tree':>5} {'cps':>4} {'engine s':>9} "
          f"{'update s':>9} {'flush s':>8}  (CPU seconds, median of {opts.rounds})")
    for shape in sweep_shapes(opts.sweep_only):
        index = every.index(shape)
        for per in opts.per_checkpoint:
            got: dict[str, list[dict[str, float]]] = {t: [] for t in trees}
            for r in range(max(1, opts.rounds)):
                order = list(trees) if r % 2 == 0 else list(reversed(trees))
                for name in order:
                    tree = trees[name]
                    out = subprocess.run(
                        [str(tree / ".venv" / "bin" / "python"), str(Path(__file__).resolve()),
                         "--one", f"{index},{per}", "--fetch", str(opts.fetch)],
                        env={**os.environ, "BENCH_TREE": str(tree)}, cwd=tree,
                        check=True, capture_output=True, text=True).stdout
                    got[name].append(json.loads(out.strip().splitlines()[-1]))
            for name, runs in got.items():
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"{_shape_label(shape):<58} {per:>9,} {name:>5} {med['checkpoints']:>4.0f} "
                      f"{med['engine']:>9.2f} {med['update']:>9.2f} {med['flush']:>8.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
