"""A `slawatch worker` process with a measurement inside it (bench/throughput.py --inproc).

    python bench/inworker.py MODE worker [worker flags...]

The process is the worker command itself (`agents.cli.main`): the same GC and malloc
policies, the same transport patches, the Faust app built by ``build_app``, its consumer
group joined, its web server up. One thing is changed, by MODE:

``raw``        a raw aiokafka consumer in the worker's event loop (the loop our batch
               handlers run on) reads ``BENCH_TOPIC``: ``getmany`` + ``orjson.loads``
               per record + a commit per fetch, as ``throughput.raw_getmany`` does in the
               bench process. It is made by Faust's own factory for the worker's consumer
               (``AIOKafkaConsumerThread._create_worker_consumer``), so it has the worker's
               settings (fetch size, the 100 ms fetch wait of ``faust_patches``, timeouts,
               CRC checks, poll records); only the group id (its own) and the assignor
               (round robin: Faust's assignor is the app's own state) differ. The worker's
               own input topic is an empty one, so the worker idles beside it.
``rawthread``  the same consumer on the loop of Faust's consumer thread, where the
               worker's own aiokafka consumer fetches (its records reach our handlers
               through ``call_thread``, a hop between threads and loops).
``worker``     nothing changed: the worker as it is, with ``BENCH_SWITCHINTERVAL`` (the
               GIL's switch interval, s) applied as in every mode.
``trace``      nothing changed, but where the worker's time goes is written to
               ``BENCH_OUT`` (JSON, rewritten every second): every batch handler call
               (its topic, the Kafka timestamps of its records per partition, the event
               times ``ts`` of stage 1's input), every fetch wait, checkpoint, garbage
               collection (``gc.callbacks``), ``/metrics`` response, scrape prepare or
               refresh step, each stall of the event loop (and of the consumer
               thread's loop) longer than 5 ms, and the client's requests: every
               fetch request to the broker (per partition: fetch offset, the high
               watermark answered, bytes returned) and every produce request.
               ``BENCH_FETCH_MAX_WAIT_MS`` (any mode) sets the fetch's wait at the
               broker instead of ``faust_patches.FETCH_MAX_WAIT_MS``. For bench/latency_trace.py, which
               attributes each late event's time to these.
``fetch``      the worker reads its input topic as always (Faust's consumer thread, the
               batch consumer's drain loop, admission, commits), but stage 1 only decodes
               each record with ``orjson.loads`` and sends nothing: the client, Faust and
               our consumer path without either stage's work.

Each writes ``{"events": n, "seconds": s, "rate": r}`` to ``BENCH_OUT`` once
``BENCH_EVENTS`` records were read: the time from the return of the first fetch with
records to the end of the last, as ``raw_getmany`` measures. (The pipeline's figure,
from ``/api/worker``, starts at the end of its first batch: a first fetch can hold
most of a 200k backlog, so that figure flatters it; ``begun_at`` is the start.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# ``BENCH_CODE_TREE``: another checkout whose slawatch runs under this measurement (the
# bench's ``Worker(tree=...)`` runs that tree's venv, in that tree).
sys.path.insert(0, os.environ.get("BENCH_CODE_TREE") or str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402

MODES = ("raw", "rawthread", "fetch", "worker", "trace")


async def consume(consumer: Any, n: int) -> tuple[float, float]:
    """``getmany`` + ``orjson.loads`` per record + a commit per fetch until ``n`` records
    were read; (seconds from the first fetch with records to the last, records/s). The
    raw baseline's one loop: ``throughput.raw_getmany`` runs it in the bench process."""
    loads = orjson.loads
    seen = 0
    t0 = 0.0
    while seen < n:
        batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        if batch and not t0:
            t0 = time.perf_counter()
        for records in batch.values():
            for r in records:
                loads(r.value)
            seen += len(records)
        if batch:
            await consumer.commit()
    seconds = max(1e-9, time.perf_counter() - t0)
    return seconds, n / seconds


def _install_raw(built: Any, on_thread: bool) -> None:
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    app = built.app
    topic = os.environ["BENCH_TOPIC"]
    n = int(os.environ["BENCH_EVENTS"])
    out = Path(os.environ["BENCH_OUT"])

    async def run_raw() -> None:
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        consumer._group_id = f"inworker-raw-{time.time()}"
        consumer._partition_assignment_strategy = (RoundRobinPartitionAssignor,)
        consumer.subscribe([topic])
        await consumer.start()
        try:
            seconds, rate = await consume(consumer, n)
        finally:
            await consumer.stop()
        out.write_bytes(orjson.dumps({"events": n, "seconds": seconds, "rate": rate}))

    async def task() -> None:
        while not built.rt.ready():  # the worker's own group join first
            await asyncio.sleep(0.1)
        if on_thread:
            thread = app.consumer._thread
            fut = asyncio.run_coroutine_threadsafe(run_raw(), thread.thread_loop)
            await asyncio.wrap_future(fut)
        else:
            await run_raw()

    app.task(task)


def _install_fetch() -> None:
    from agents.worker.pipeline import Pipeline

    out = os.environ.get("BENCH_OUT")
    want = int(os.environ.get("BENCH_EVENTS", "0"))
    seen = [0, 0.0]  # records, perf_counter at the first call (the first fetch's return)

    async def stage1(self: Pipeline, batch: dict[Any, Any]) -> list[Any]:
        if not seen[1]:
            seen[1] = time.perf_counter()
        loads = orjson.loads
        n = 0
        for records in batch.values():
            for r in records:
                loads(r.value)
            n += len(records)
        self.rt.counters.batches += 1
        self.rt.counters.events += n
        seen[0] += n
        if out and want and seen[0] >= want and not Path(out).exists():
            seconds = max(1e-9, time.perf_counter() - seen[1])
            Path(out).write_bytes(orjson.dumps({"events": seen[0], "seconds": seconds,
                                                "rate": seen[0] / seconds}))
        return []

    Pipeline.stage1 = stage1  # type: ignore[method-assign]


def _install_trace(built: Any) -> None:
    import gc
    import threading

    from agents.exposition.collector import SlawatchCollector
    from agents.web import views
    from agents.worker import batching

    out = Path(os.environ["BENCH_OUT"])
    wall = time.time
    trace: dict[str, list[Any]] = {k: [] for k in (
        "batch", "fetch", "ckpt", "ckpt_fn", "part", "gc", "scrape", "ahead", "lag",
        "thread_lag", "send", "bfetch", "produce")}
    lock = threading.Lock()  # the GC callback may run on the consumer thread

    gc_at: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_at[0] = wall()
        else:
            t = gc_at[0]
            with lock:
                trace["gc"].append((t, wall() - t, info["generation"], info["collected"],
                                    threading.current_thread() is threading.main_thread()))

    gc.callbacks.append(on_gc)

    cls = batching.BatchConsumer
    run, wait_next, checkpoint = cls._run, cls._wait_next_records, cls.checkpoint

    async def traced_run(self: Any, handler: Any, batch: dict[Any, Any], generation: int,
                         *args: Any, **kwargs: Any) -> None:
        parts = {f"{tp.topic}|{tp.partition}": [r.timestamp for r in recs]
                 for tp, recs in batch.items()}
        ts: list[float] = []
        for tp, recs in batch.items():
            if not tp.topic.endswith("segments"):
                for r in recs:
                    with contextlib.suppress(Exception):  # a measurement, never fatal
                        ts.append(float(orjson.loads(r.value)["ts"]))
        # a batch of the worker's own segments, handed on from their sends (apply_own)
        own = bool(kwargs.get("own"))
        t = wall()
        await run(self, handler, batch, generation, *args, **kwargs)
        trace["batch"].append((t, wall() - t, parts, ts, own))

    async def traced_wait(self: Any, timeout: float) -> Any:
        t = wall()
        result = await wait_next(self, timeout)
        n = sum(len(r) for r in (result[0] or {}).values())
        trace["fetch"].append((t, wall() - t, n))
        return result

    async def traced_checkpoint(self: Any, cp: Any) -> Any:
        t = wall()
        result = await checkpoint(self, cp)
        trace["ckpt"].append((t, wall() - t, len(self.checkpoints) and
                              self.checkpoints.index(cp)))
        return result

    def timed(kind: str, fn: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            t = wall()
            try:
                return await fn(*args, **kwargs)
            finally:
                trace["part"].append((t, wall() - t, kind))
        return call

    def timed_sync(kind: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t = wall()
            try:
                return fn(*args, **kwargs)
            finally:
                trace["part"].append((t, wall() - t, kind))
        return call

    # The pieces of a checkpoint: each table group's write (cp.fn), and within the
    # services' write the rollups' update and the tables' flushes.
    for i, cp in enumerate(built.app.consumer.checkpoints):
        cp.fn = timed(f"write{i}", cp.fn)
    rt = built.rt
    rollups = rt.rollups
    rollups.update = timed_sync("rollups.update", rollups.update)
    rollups.flush = timed("rollups.flush", rollups.flush)
    rt.services.flush = timed("services.flush", rt.services.flush)
    rt.components.flush = timed("components.flush", rt.components.flush)

    pipeline = built.pipeline
    send = pipeline.send

    async def traced_send(topic: str, key: Any, value: Any, partition: Any,
                          headers: Any = None) -> Any:
        # (start, seconds the send's await took: a full producer batch waits for the
        # sender to drain it, topic, bytes)
        t = wall()
        fut = await send(topic, key, value, partition, headers)
        trace["send"].append((t, wall() - t, topic, len(value or b"")))
        return fut

    pipeline.send = traced_send

    # The client's own requests: each fetch request to the broker (on the consumer
    # thread's loop) with the partitions it brought records of, and each produce
    # request with its partitions' record counts (the producer's sender, main loop).
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.producer.sender import Sender

    proc_fetch, send_produce = Fetcher._proc_fetch_request, Sender._send_produce_req

    def short(topic: str, partition: int) -> str:
        return f"{topic}|{partition}"

    async def traced_fetch(self: Any, assignment: Any, node_id: Any, request: Any) -> Any:
        t = wall()
        client = self._client
        answer: dict[str, Any] = {}
        send = client.send

        async def send_traced(node: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
            response = await send(node, req, *args, **kwargs)
            if req is not request:  # another task's request meanwhile
                return response
            # per partition: (fetch offset, high watermark, bytes of records returned)
            asked = {(topic, p): off for topic, parts in req.topics for p, off, _ in parts}
            for topic, parts in response.topics:
                for p, _err, high, *data in parts:
                    answer[short(topic, p)] = (asked.get((topic, p)), high,
                                               len(data[-1] or b"") if data else 0)
            return response

        client.send = send_traced  # this call's request only: restored below
        try:
            return await proc_fetch(self, assignment, node_id, request)
        finally:
            client.send = send
            with lock:
                trace["bfetch"].append((t, wall() - t, answer))

    async def traced_produce(self: Any, node_id: Any, batches: Any) -> Any:
        t = wall()
        counts = {short(tp.topic, tp.partition): b.record_count for tp, b in batches.items()}
        try:
            return await send_produce(self, node_id, batches)
        finally:
            trace["produce"].append((t, wall() - t, counts))

    Fetcher._proc_fetch_request = traced_fetch
    Sender._send_produce_req = traced_produce

    cls._run = traced_run  # type: ignore[method-assign]
    cls._wait_next_records = traced_wait  # type: ignore[method-assign]
    cls.checkpoint = traced_checkpoint  # type: ignore[method-assign]

    respond = views.metrics_response  # type: ignore[attr-defined]

    async def traced_metrics(request: Any, registry: Any) -> Any:
        t = wall()
        try:
            return await respond(request, registry)
        finally:
            trace["scrape"].append((t, wall() - t))

    views.metrics_response = traced_metrics  # type: ignore[attr-defined]

    def stepped(kind: str, original: Any) -> Any:
        def steps(self: Any, *args: Any, **kwargs: Any) -> Any:
            it = original(self, *args, **kwargs)
            while True:
                t = wall()
                try:
                    next(it)
                except StopIteration:
                    trace["ahead"].append((t, wall() - t, kind, True))
                    return
                trace["ahead"].append((t, wall() - t, kind, False))
                yield
        return steps

    SlawatchCollector.prepare = stepped("prepare", SlawatchCollector.prepare)  # type: ignore[method-assign]
    SlawatchCollector.refresh = stepped("refresh", SlawatchCollector.refresh)  # type: ignore[method-assign]

    async def lag(key: str) -> None:
        perf = time.perf_counter
        while True:
            t = perf()
            await asyncio.sleep(0.002)
            late = perf() - t - 0.002
            if late > 0.005:
                trace[key].append((wall() - late - 0.002, late))

    async def dump() -> None:
        started = False
        while True:
            await asyncio.sleep(1.0)
            if not started and built.rt.ready():
                thread = getattr(built.app.consumer, "_thread", None)
                loop = getattr(thread, "thread_loop", None)
                if loop is not None:
                    asyncio.run_coroutine_threadsafe(lag("thread_lag"), loop)
                    started = True
            with lock:
                data = orjson.dumps(trace)
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(out)

    async def loop_lag() -> None:
        await lag("lag")

    built.app.task(loop_lag)
    built.app.task(dump)


def main() -> int:
    mode, argv = sys.argv[1], sys.argv[2:]
    if mode not in MODES:
        raise SystemExit(f"inworker: MODE is one of {MODES}, not {mode!r}")
    if os.environ.get("BENCH_SWITCHINTERVAL"):  # the GIL's switch interval (s)
        sys.setswitchinterval(float(os.environ["BENCH_SWITCHINTERVAL"]))
    if os.environ.get("BENCH_FETCH_MAX_WAIT_MS"):  # measuring the broker's fetch wait
        from agents.transport import faust_patches

        # applied first with this wait, the worker's own call is then a no-op
        faust_patches.patch_fetch_max_wait(int(os.environ["BENCH_FETCH_MAX_WAIT_MS"]))
    import agents.worker.app as app_mod

    build_app = app_mod.build_app
    if mode == "fetch":
        _install_fetch()
    elif mode == "trace":
        def build_traced(settings: Any, catalog: Any) -> Any:
            built = build_app(settings, catalog)
            _install_trace(built)
            return built

        app_mod.build_app = build_traced
    elif mode != "worker":
        def build(settings: Any, catalog: Any) -> Any:
            built = build_app(settings, catalog)
            _install_raw(built, on_thread=mode == "rawthread")
            return built

        app_mod.build_app = build
    from agents.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
