"""The worker's two stages on one sweep shape, in one process, without a broker.

What a worker does per fetch of a backlog, minus the I/O: the input partitions' records
cut by ``alignment.cuts`` (every partition present in every fetch: the worker's
``Aligner`` also holds partitions against ones a fetch did not bring), ``stage1.classify``
per partition in slices, the component trackers stored in ``TrackerTable``s (over
in-memory stand-ins of Faust's tables), the fetch's segments as ``segwire.messages`` (one
or a few messages per segments partition), then stage 2: each message decoded and
``stage2.apply_all`` a slice of services at a time. Before the timed run it builds what
the worker builds at start and while it joins its group (the models, ``warm_steps``).
No changelog writes (but with ``--checkpoint-every``), day rollups, commits or scrapes:
this is the per-event CPU of our stages alone, far less noisy than ``throughput.py
--sweep`` on a shared machine, and it can be profiled with many samples. It runs in an
older tree too (copied there for an A/B run), with that tree's loops.

    .venv/bin/python bench/stages.py --sweep-only size=1 --sweep-only fanout=5
    .venv/bin/python bench/stages.py --sweep-only components=20000 --repeat 3
    .venv/bin/python bench/stages.py --sweep-only base --cprofile 30
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/stages.py \
        --sweep-only size=1 --events 20000 --repeat 1 --callgrind
    mkfifo /tmp/ctl && perf record -e cpu-clock -g -D -1 --control fifo:/tmp/ctl \
        .venv/bin/python bench/stages.py --sweep-only components=20000 --perf-ctl /tmp/ctl

Prints, per shape, events/s of both stages (best of ``--repeat`` fresh runs) and the
share of each stage. Times are this thread's CPU time, not wall time: on a shared
machine, time spent waiting for a core is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.cli.worker import build_models_ahead  # noqa: E402
from agents.process import gcpolicy, mallocpolicy  # noqa: E402
from agents.worker import alignment, segwire  # noqa: E402
from agents.worker.partitioning import Partitioner  # noqa: E402
from agents.worker.state import (  # noqa: E402
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
)
from bench.throughput import (  # noqa: E402
    _shape_label,
    make_events,
    make_shape_catalog,
    sweep_shapes,
)
from streams import native, stage1, stage2  # noqa: E402
from streams.catalog import parse_catalog  # noqa: E402
from streams.component import ComponentTracker  # noqa: E402
from streams.service import ServiceTracker  # noqa: E402
from streams.unmapped import UnmappedTracker  # noqa: E402
from tests.fake_tables import Table  # noqa: E402

MANY = hasattr(segwire, "messages")


def _warm_before(catalog: Any, component_partition: Any, service_partition: Any) -> Any:
    """A tree from before ``warm_steps`` (A/B runs): what its worker warmed alike."""
    _ = catalog.reverse_index
    for key in catalog.services:
        service_partition(key)
    yield


try:
    from agents.worker.app import warm_steps
except ImportError:
    warm_steps = _warm_before
try:
    from agents.worker.runtime import component_table, service_table
except ImportError:
    component_table = service_table = None  # type: ignore[assignment]
APPLY_ALL = hasattr(stage2, "apply_all")
#: Whether the components table marks what stage 1 gets as changed (``get_many``'s touch).
TOUCH_ON_GET = "touch" in TrackerTable.get_many.__code__.co_varnames
if APPLY_ALL:
    from agents.worker.pipeline import apply_stage2_slice, stage2_slices
#: ``classify``'s lookup of a slice's trackers at once, in trees that have it.
MANY_LOOKUP: dict[str, Any] = {}
#: The worker's slice of a partition's records (agents/worker/pipeline.py SLICE).
SLICE = 2048
LATENESS = 600.0


class Run:
    """One fresh worker state: tables, catalog, counters."""

    def __init__(self, catalog: Any, partitions: int) -> None:
        self.catalog = catalog
        self.partitions = partitions
        self.part = Partitioner(partitions)
        # The worker's tables store records as a head and patches (runtime.bind_tables).
        self.components: TrackerTable[ComponentTracker]
        self.services: TrackerTable[ServiceTracker]
        if component_table is not None:  # the worker's tables (agents/worker/runtime.py)
            self.components = component_table(Table())
            self.services = service_table(Table())
        else:  # a tree from before them (A/B runs)
            self.components = TrackerTable(
                Table(), decode_component, encode_component,
                ComponentTracker.to_record, ComponentTracker.from_record,
                getattr(ComponentTracker, "small_record", None))
            self.services = TrackerTable(
                Table(), decode_service, encode_service,
                ServiceTracker.to_record, ServiceTracker.from_record)
        self.t3 = 0.0
        self.checkpoints = 0
        self.unmapped = UnmappedTracker()
        if hasattr(self.components, "get_many"):
            MANY_LOOKUP["lookup_many"] = self.components.get_many
        self.t1 = 0.0
        self.t2 = 0.0
        self.segments = 0
        self.messages = 0

    def fetch(self, batch: dict[int, list[bytes]], now: float) -> None:
        """Stage 1 on one fetch (all partitions), then stage 2 on its segments."""
        t0 = time.thread_time()
        fanout: dict[str, list[segwire.Segment]] = {}
        table = self.components
        for p, values in batch.items():
            many = MANY_LOOKUP
            if TOUCH_ON_GET:  # as the pipeline does
                many = {"lookup_many": functools.partial(table.get_many, touch=p)}
            for lo in range(0, len(values), SLICE):
                done = stage1.classify(
                    values[lo:lo + SLICE], None, now, lookup=table.get, catalog=self.catalog,
                    allowed_lateness=LATENESS, fanout=fanout, unmapped=self.unmapped,
                    here=None, **many)
                if MANY_LOOKUP:  # as the pipeline does
                    if not TOUCH_ON_GET:
                        table.touch_many(done.trackers.keys() - done.created, p)
                    for c in done.created:
                        table.put(c, done.trackers[c], p)
                    continue
                for c, tracker in done.trackers.items():
                    if c in done.created:
                        table.put(c, tracker, p)
                    else:
                        table.touch(c, p)
        part = self.part
        messages: list[tuple[int, bytes | None, bytes]]
        if MANY:  # the messages the pipeline sends
            messages = segwire.messages(fanout, part)
        else:  # the code of a tree from before many-services messages on the path
            messages = [(part(name), name.encode(), segwire.encode(segs))
                        for name, segs in fanout.items()]
        t1 = time.thread_time()
        svcs = self.services
        catalog = self.catalog
        by_service: dict[str, tuple[int, list[segwire.Columns]]] = {}
        for p, key, value in messages:
            if key is None:
                shares = segwire.decode_many(value)
            else:
                shares = [(key.decode(), segwire.decode_columns(value))]
            for name, share in shares:
                entry = by_service.get(name)
                if entry is None:
                    by_service[name] = (p, [share])
                else:
                    entry[1].append(share)
        if APPLY_ALL:  # as the pipeline does
            items = [(name, parts[0] if len(parts) == 1 else segwire.concat(parts))
                     for name, (p, parts) in by_service.items()]
            part_of = {name: p for name, (p, _) in by_service.items()}
            for chunk in stage2_slices(items):
                gone = apply_stage2_slice(svcs, chunk, part_of, catalog)
                self.segments += sum(len(cols.comps) for name, cols in chunk if name not in gone)
        else:  # the code of a tree from before stage2.apply_all
            for name, (p, parts) in by_service.items():
                cols = segwire.concat(parts)
                before = svcs.get(name)
                service = stage2.apply(before, name, *cols, catalog)
                if service is None:
                    continue
                if before is None:
                    svcs.put(name, service, p)
                else:
                    svcs.touch(name, p)
                self.segments += len(cols.comps)
        self.messages += len(messages)
        t2 = time.thread_time()
        self.t1 += t1 - t0
        self.t2 += t2 - t1


class _Sent:
    def add_done_callback(self, fn: Any) -> None:
        pass


async def _send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
    return _SENT


_SENT = _Sent()
_LOOP: asyncio.AbstractEventLoop | None = None


async def _flush_tables(run: Run) -> None:
    for table in (run.components, run.services):
        await table.flush(_send)


def checkpoint_loop() -> asyncio.AbstractEventLoop:
    """The event loop checkpoints run on, made (and ``flush``'s first import done)
    before a timed run: a worker has both long before its first checkpoint, and the
    first ``partition_context`` imports ``faust.streams`` (~0.1 s, and most of a
    checkpoint's instructions under callgrind)."""
    global _LOOP
    if _LOOP is None:
        import faust.streams  # noqa: F401

        _LOOP = asyncio.new_event_loop()
    return _LOOP


def checkpoint(run: Run) -> None:
    """What a worker's checkpoint computes of both tables (no producer, no rollups):
    every tracker changed since the last one, written once, one send per record as the
    worker sends them. ``flush`` sends the partitions side by side (``asyncio.gather``),
    so it runs on an event loop; the fake sends never wait."""
    loop = checkpoint_loop()
    t0 = time.thread_time()
    loop.run_until_complete(_flush_tables(run))
    run.t3 += time.thread_time() - t0
    run.checkpoints += 1


def fetches(msgs: list[tuple[bytes, bytes]], partitions: int, per_fetch: int
            ) -> list[dict[int, list[bytes]]]:
    """The backlog as the worker's fetches: each takes up to ``per_fetch`` records of
    every partition, cut by ``alignment.cuts``; what a cut leaves comes first in the
    next fetch (as the worker's carry)."""
    part = Partitioner(partitions)
    queues: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for key, value in msgs:
        queues[part(key.decode())].append(value)
    pos = dict.fromkeys(queues, 0)
    out = []
    while any(pos[p] < len(q) for p, q in queues.items()):
        batch = {p: q[pos[p]:pos[p] + per_fetch] for p, q in queues.items() if pos[p] < len(q)}
        for p, n in alignment.cuts(batch, alignment.event_ts).items():
            batch[p] = batch[p][:n]
        for p, recs in batch.items():
            pos[p] += len(recs)
        out.append(batch)
    return out


def _callgrind(what: str) -> None:
    """Instrumentation on or off (under ``valgrind --tool=callgrind --instr-atstart=no``):
    instructions counted for the runs only, not for making the events."""
    subprocess.run(["callgrind_control", "-i", what, str(os.getpid())], check=True,
                   stdout=subprocess.DEVNULL)


def _perf(ctl: str | None, what: str) -> None:
    """Sampling on or off (under ``perf record --control fifo:CTL -D -1``): samples of
    the runs only, with the machine's real caches (callgrind simulates them)."""
    if ctl:
        with open(ctl, "w") as fifo:
            fifo.write(f"{what}\n")


def run_shape(shape: dict[str, Any], index: int, args: argparse.Namespace) -> dict[str, float]:
    catalog = parse_catalog(orjson.loads(make_shape_catalog(
        shape["components"], shape["size"], shape["fanout"])), "bench")
    start = time.time() - 7200
    msgs = make_events(args.events or shape["events"], shape["components"], shape["change"],
                       start, seed=index + 1)
    batches = fetches(msgs, shape["partitions"], args.per_fetch)
    n = len(msgs)
    results = []
    fault_counts: list[int] = []
    for r in range(max(1, args.repeat)):
        # A fresh catalog each run, its models built before the run as a worker builds
        # them at start.
        cat = parse_catalog(orjson.loads(make_shape_catalog(
            shape["components"], shape["size"], shape["fanout"])), "bench") if r else catalog
        build_models_ahead(cat)
        run = Run(cat, shape["partitions"])
        for _ in warm_steps(cat, Partitioner(shape["partitions"]), run.part):
            pass  # what the worker builds while it joins its group
        now = time.time()
        if args.checkpoint_every:
            checkpoint_loop()
        gc.collect()
        prof = cProfile.Profile() if args.cprofile else None
        if args.callgrind:
            _callgrind("on")
        _perf(args.perf_ctl, "enable")
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t0 = time.thread_time()
        if prof is not None:
            prof.enable()
        every = args.checkpoint_every
        for k, batch in enumerate(batches, 1):
            with gcpolicy.paused:  # as the worker handles a fetch (agents/worker/batching.py)
                run.fetch(batch, now)
            if every and (k % every == 0 or k == len(batches)):
                checkpoint(run)
        if prof is not None:
            prof.disable()
        took = time.thread_time() - t0
        _perf(args.perf_ctl, "disable")
        faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - faults
        if args.callgrind:
            _callgrind("off")
        results.append((took, run))
        fault_counts.append(faults)
        if prof is not None and r == 0:
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)
    took, run = min(results, key=lambda tr: tr[0])
    return {"ev/s": n / took, "median ev/s": n / statistics.median(t for t, _ in results),
            "faults/event": statistics.median(fault_counts) / n,
            "stage1 s": run.t1, "stage2 s": run.t2, "fetches": len(batches),
            "segments": run.segments, "messages": run.messages,
            "checkpoint s": run.t3, "checkpoints": run.checkpoints}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE",
                    help="the sweep points to run (as throughput.py); default: the three "
                         "worst (size=1, fanout=5, components=20000) and base")
    ap.add_argument("--repeat", type=int, default=3, help="fresh runs per shape (best is shown)")
    ap.add_argument("--per-fetch", type=int, default=4096,
                    help="records of each partition a fetch brings at most (default 4096)")
    ap.add_argument("--events", type=int, default=0, help="override the shape's event count")
    ap.add_argument("--python", action="store_true", help="the pure-Python loops (no C)")
    ap.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                    help="also write both tables as a checkpoint does (fake sends, no "
                         "rollups) every N fetches and at the end; ev/s counts it")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N",
                    help="cProfile the first run of each shape; print the top N by own time")
    ap.add_argument("--callgrind", action="store_true",
                    help="under valgrind --tool=callgrind --instr-atstart=no: instrument the "
                         "runs only (instruction counts do not depend on the machine's load)")
    ap.add_argument("--perf-ctl", metavar="FIFO",
                    help="under perf record -D -1 --control fifo:FIFO: sample the runs only")
    args = ap.parse_args()
    gcpolicy.apply()  # as a worker does (agents/cli/worker.py)
    mallocpolicy.apply()
    if args.python:
        native.native = None
    only = args.sweep_only or ["size=1", "fanout=5", "components=20000", "base"]
    every = sweep_shapes()
    print(f"{native.describe()}; {args.repeat} run(s) a shape, {args.per_fetch} records "
          "per partition a fetch at most", flush=True)
    for shape in sweep_shapes(only):
        res = run_shape(shape, every.index(shape), args)
        total = res["stage1 s"] + res["stage2 s"]
        print(f"{_shape_label(shape)}: {res['ev/s']:>9,.0f} ev/s (median "
              f"{res['median ev/s']:,.0f}); {res['faults/event']:.3f} page faults an event; "
              f"stage 1 {res['stage1 s'] / total:.0%}, stage 2 "
              f"{res['stage2 s'] / total:.0%}; {res['fetches']} fetches, "
              f"{res['messages']:,} segment messages, {res['segments']:,} segments"
              + (f"; {res['checkpoints']} checkpoints {res['checkpoint s']:.3f} s"
                 if res["checkpoints"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
