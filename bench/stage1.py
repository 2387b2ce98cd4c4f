"""CPU of the worker's stage 1 (``Pipeline.stage1``) per event, in one process, no broker.

Stage 1 as the worker runs it on a sweep point's backlog: the real ``Pipeline.stage1``
over in-memory tables, fetches of up to ``--per-fetch`` records of every input
partition (what ``alignment.cuts`` leaves is offered again first), sends answered at
once. The input topic has the point's partition count and the worker ``--partitions``
(8, as in the sweep): when they differ the input is not co-partitioned with the tables
and every record is classified in its component's table partition where it is read
(``agents/worker/routing.py``); when they match, in its own. Then the components
checkpoint (``checkpoint_components``: counters and trackers to the changelog) every
``--checkpoint-every`` events, timed apart. CPU time of this thread: a loaded machine
moves it far less than a throughput run.

``--ab TREE`` runs the same in TREE's code (its own .venv), alternated ``--rounds``
times, and prints both.

    .venv/bin/python bench/stage1.py --sweep-only partitions=1 --sweep-only base \\
        --rounds 3 --ab /path/to/other/checkout
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
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

ROOT = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

INPUT = "component-events"


class Rec(NamedTuple):
    """What ``register_batch_topic`` hands a handler (aiokafka_patches' LeanRecord)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple[Any, ...]


class TP(NamedTuple):
    topic: str
    partition: int


def replay(shape: dict[str, Any], index: int, worker_partitions: int, per_fetch: int,
           every: int) -> dict[str, float]:
    """CPU seconds of stage 1 and of the components checkpoints over the point's events."""
    from agents.settings import WorkerSettings
    from agents.worker.partitioning import Partitioner
    from agents.worker.pipeline import Pipeline
    from bench.throughput import make_events, make_shape_catalog
    from streams.catalog import parse_catalog
    from tests.fake_tables import FakeRuntime, PipelineTopics, Table

    cat = parse_catalog(orjson.loads(make_shape_catalog(
        shape["components"], shape["size"], shape["fanout"])), "bench")
    msgs = make_events(shape["events"], shape["components"], shape["change"],
                       time.time() - 7200, seed=index + 1)
    nin = shape["partitions"]
    part = Partitioner(nin)
    queues: list[list[Rec]] = [[] for _ in range(nin)]
    for key, value in msgs:
        p = part(key.decode())
        queues[p].append(Rec(INPUT, p, len(queues[p]), 0, key, value, ()))

    settings = WorkerSettings(partitions=worker_partitions)
    rt = FakeRuntime(settings, cat)
    rt.bind_tables(Table(), Table())
    owned = [SimpleNamespace(topic=settings.reroute_topic, partition=q)
             for q in range(worker_partitions)]
    rt.app = SimpleNamespace(consumer=SimpleNamespace(next_offset=lambda tp: 0),
                             rebalancing=False,
                             assignor=SimpleNamespace(assigned_actives=lambda: owned))

    loop = asyncio.new_event_loop()

    async def send(topic: str, key: Any, value: Any, partition: int | None, *rest: Any) -> Any:
        fut = loop.create_future()
        fut.set_result(SimpleNamespace(partition=partition or 0, offset=0,
                                       topic_partition=None))
        return fut

    pipeline = Pipeline(rt, PipelineTopics(), send)
    pipeline._copartitioned = nin == worker_partitions
    cpu = {"stage1": 0.0, "checkpoint": 0.0, "checkpoints": 0.0, "events": 0.0}
    pos = [0] * nin
    since = 0
    while any(pos[p] < len(q) for p, q in enumerate(queues)):
        batch: dict[Any, Sequence[Any]] = {TP(INPUT, p): q[pos[p]:pos[p] + per_fetch]
                 for p, q in enumerate(queues) if pos[p] < len(q)}
        t0 = time.thread_time()
        loop.run_until_complete(pipeline.stage1(batch))
        cpu["stage1"] += time.thread_time() - t0
        for tp, recs in batch.items():  # the handler may have kept a prefix
            pos[tp.partition] += len(recs)
            since += len(recs)
            cpu["events"] += len(recs)
        if since >= every or not any(pos[p] < len(q) for p, q in enumerate(queues)):
            since = 0
            t0 = time.thread_time()
            loop.run_until_complete(pipeline.checkpoint_components())
            cpu["checkpoint"] += time.thread_time() - t0
            cpu["checkpoints"] += 1
    loop.close()
    return cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE")
    ap.add_argument("--worker-partitions", type=int, default=8)
    ap.add_argument("--per-fetch", type=int, default=4096,
                    help="records of each input partition a fetch brings at most")
    ap.add_argument("--checkpoint-every", type=int, default=50_000, metavar="EVENTS")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ab", type=Path, default=None, metavar="TREE")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "index": JSON out
    args = ap.parse_args()

    from bench.throughput import _shape_label, sweep_shapes

    shapes = sweep_shapes(args.sweep_only or ["base"])
    if args.one is not None:
        from agents.process import gcpolicy, mallocpolicy

        gcpolicy.apply()  # as a worker does (agents/cli/worker.py)
        mallocpolicy.apply()
        i = int(args.one)
        print(json.dumps(replay(shapes[i], i, args.worker_partitions, args.per_fetch,
                                args.checkpoint_every)))
        return 0
    trees = [("this", ROOT)] + ([("ab", args.ab.resolve())] if args.ab else [])
    for i, shape in enumerate(shapes):
        got: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
        for _ in range(args.rounds):
            for name, tree in trees:
                env = {**os.environ, "BENCH_TREE": str(tree)}
                out = subprocess.run(
                    [str(tree / ".venv/bin/python"), str(Path(__file__).resolve()),
                     "--one", str(i), "--worker-partitions", str(args.worker_partitions),
                     "--per-fetch", str(args.per_fetch),
                     "--checkpoint-every", str(args.checkpoint_every),
                     *[f"--sweep-only={s}" for s in args.sweep_only or ["base"]]],
                    env=env, check=True, capture_output=True, text=True)
                got[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(_shape_label(shape), f"(worker --partitions {args.worker_partitions})")
        for name, tree in trees:
            runs = got[name]
            n = runs[0]["events"]
            s1 = [r["stage1"] / n * 1e6 for r in runs]
            cp = [r["checkpoint"] / n * 1e6 for r in runs]
            print(f"  {name:<5} {tree!s:<28} stage 1 {statistics.median(s1):6.2f} us/event "
                  f"({', '.join(f'{x:.2f}' for x in s1)}); components checkpoints "
                  f"{statistics.median(cp):5.2f} us/event ({int(runs[0]['checkpoints'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
