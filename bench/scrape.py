"""The first /metrics scrape after a start, at production scale, in one process.

A worker that starts holds its trackers only as the bytes its tables recovered; the
first scrape decodes each, computes every service's and component's values and writes
~1.1M series. This bench builds that state without Kafka (the same catalog and events
as ``bench/throughput.py --scale``, applied by the engine, encoded as the tables store
them), then times, in the same run and alternating:

- ``first``: ``render`` on a runtime that has just "recovered" (nothing decoded yet);
- ``warm``:  the scrape right after it (what is reused from the first);
- ``baseline``: the same families through prometheus_client (``rt.report(now)`` and
  ``generate_latest`` over the generic families of tests/support/metrics.py), the
  independent rendering the unit tests compare with.

Times are the process's CPU seconds (``time.process_time``): the machine is shared, and
wall time swings with the other jobs' load. Every scrape's text is checked equal to the
baseline's, byte for byte.

    .venv/bin/python bench/scrape.py [--components 100000 --services 10000 --rounds 3]
    .venv/bin/python bench/scrape.py --profile out.svg   # py-spy record of first scrapes
    .venv/bin/python bench/scrape.py --worker [--ab TREE] # over HTTP, in real workers

``--worker`` measures the same scrapes over HTTP in real worker processes (an embedded
broker, ``bench/throughput.py``'s worker), wall time of ``curl`` sending what a
Prometheus scrape sends (``Accept-Encoding: gzip`` and its ``Accept``; a third
scrape without gzip), in three situations per round: (1) a fresh worker that worked
off the --scale backlog (300k events, every tracker changed after ready), (2) the same
state after a restart, the first scrape ``--wait`` s after ready, (3) then a backlog
of a down/up blip of every component (every tracker changed again since the prepare).
After a backlog the first scrape comes ``--backlog-wait`` s after it was worked off.
With ``--ab TREE`` the worker of another checkout (its own .venv) runs the same rounds,
alternated.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402

from agents.exposition.collector import make_registry, render  # noqa: E402
from agents.process import gcpolicy  # noqa: E402
from agents.settings import WorkerSettings  # noqa: E402
from agents.worker.state import TrackerTable, encode_component, encode_service  # noqa: E402
from bench.throughput import make_catalog, make_events  # noqa: E402
from streams.catalog import Catalog, parse_catalog  # noqa: E402
from streams.engine import Engine  # noqa: E402
from tests.fake_tables import FakeRuntime, Table  # noqa: E402
from tests.support.metrics import families  # noqa: E402

NL = b"\n"


State = tuple[dict[str, bytes], dict[str, bytes]]


def build_state(nc: int, ns: int, now: float) -> tuple[Catalog, State, State]:
    """The catalog and the stored bytes of every tracker after the --scale events, and
    after a backlog since of a down/up blip of every component (every tracker changed)."""
    catalog = parse_catalog(orjson.loads(make_catalog(nc, ns, 1, 0)), "bench")
    msgs = make_events(nc * 2, nc, 0.2, now - 7200, seed=2)
    msgs += [(f"c{i}".encode(), orjson.dumps({"component": f"c{i}", "state": "up",
                                              "ts": now - 60})) for i in range(nc)]
    engine = Engine(catalog, allowed_lateness=600.0)
    out = []
    for batch in (msgs, [(b"", orjson.dumps({"component": f"c{i}", "state": s, "ts": now - dt}))
                         for i in range(nc) for s, dt in (("down", 30), ("up", 25))]):
        raws = [v for _, v in batch]
        for k in range(0, len(raws), 2000):
            engine.apply_raw_many(raws[k:k + 2000], now)
        out.append(({k: encode_component(t) for k, t in engine.components.items()},
                    {k: encode_service(t) for k, t in engine.services.items()}))
    return catalog, out[0], out[1]


def fresh_runtime(catalog: Catalog, comps: dict[str, bytes], svcs: dict[str, bytes]) -> FakeRuntime:
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(comps), Table(svcs))
    rt.counters.catalog_loaded_at = 0.0  # the same text for every runtime of the run
    return rt


class _Families:
    def __init__(self, report: Any) -> None:
        self.report = report

    def collect(self) -> Any:
        return families(self.report)


def baseline(rt: FakeRuntime, now: float) -> bytes:
    """The families through prometheus_client (the collector's worker families first,
    as ``render`` writes them)."""
    head = generate_latest(make_registry(rt))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(rt.report(now)))
    body = generate_latest(registry)
    # render: worker families, then services, components, events; generate_latest
    # writes the report's families in the spec's order (events first): reorder.
    return head + _reorder(body)


def _reorder(body: bytes) -> bytes:
    """Move the event families (written first by ``families``) to the end."""
    marker = b"# HELP slawatch_service_"
    i = body.index(marker)
    return body[i:] + body[:i]


#: What a Prometheus 2.x/3.x scrape asks for (scrape/scrape.go), so the worker answers
#: as it would answer Prometheus.
PROMETHEUS_HEADERS = (
    "Accept: application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding: gzip",
    "User-Agent: Prometheus/2.x",
)


def curl_scrape(url: str, timeout: float = 120.0, gzip: bool = True) -> tuple[float, int]:
    """(wall seconds, bytes on the wire) of one scrape by curl, which runs in its own
    process (a client in this one would share its interpreter); without ``gzip``, as
    a client that does not accept it."""
    args = ["curl", "-sS", "--max-time", str(timeout), "-o", "/dev/null",
            "-w", "%{time_total} %{size_download}"]
    for h in PROMETHEUS_HEADERS:
        if gzip or not h.startswith("Accept-Encoding"):
            args += ["-H", h]
    wire = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout.split()
    return float(wire[0]), int(wire[1])


def worker_rounds(opts: argparse.Namespace) -> int:
    """``--worker``: first scrapes over HTTP in real workers (see the module doc)."""
    import tempfile

    from agents.clients.broker import EmbeddedBroker
    from bench.throughput import Worker, input_end_offsets, publish, wait_pipeline

    nc, ns = opts.components, opts.services
    work = Path(tempfile.mkdtemp(prefix="slawatch-scrape-"))
    catalog = work / "scale.yaml"
    catalog.write_text(make_catalog(nc, ns, 1, 0))
    trees: list[tuple[str, Path | None]] = [("this", None)]
    if opts.ab:
        trees.append(("other", Path(opts.ab).resolve()))
    rows: dict[tuple[str, str], list[float]] = {}
    parts = 4

    def scrapes(w: Worker, label: str, tree: str) -> None:
        for k in ("first", "second", "third, no gzip"):
            spy = None
            if opts.profile:  # a directory here: the worker recorded during each scrape
                out = Path(opts.profile) / f"{tree}-{label.replace(' ', '-')}-{k}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                                        "-r", "250", "-f", "raw", "-o", str(out), "--pid",
                                        str(w.proc.pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            t, size = curl_scrape(w.url + "/metrics", gzip=not k.endswith("no gzip"))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait()
            rows.setdefault((tree, f"{label}, {k}"), []).append(t)
            print(f"  {tree}: {label}, {k} scrape {t * 1000:.0f} ms ({size / 1e6:.1f} MB on "
                  f"the wire; load {os.getloadavg()[0]:.1f})", flush=True)

    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        for r in range(opts.rounds):
            for tree, path in (trees if r % 2 == 0 else trees[::-1]):
                app = f"scrape-{tree}-{r}"
                topic = f"{app}-events"
                broker.create_topics({topic: parts})
                now = time.time()
                msgs = make_events(nc * 2, nc, 0.2, now - 7200, seed=2)
                msgs += [(f"c{i}".encode(), orjson.dumps({"component": f"c{i}", "state": "up",
                                                          "ts": now - 60})) for i in range(nc)]
                publish(broker, topic, parts, msgs)
                ends = input_end_offsets(broker, topic, parts, msgs)
                # (1) a fresh worker: ready at once, then the backlog changes every tracker
                w = Worker(broker, catalog, work, parts, app, events_topic=topic, tree=path)
                try:
                    w.wait_ready(300)
                    wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800)
                    time.sleep(opts.backlog_wait)
                    scrapes(w, "after the start's backlog", tree)
                finally:
                    w.stop()
                # (2) restarted: the state recovered, prepared once ready
                w = Worker(broker, catalog, work, parts, app, events_topic=topic, tree=path)
                try:
                    ready = w.wait_ready(300)
                    time.sleep(opts.wait)
                    print(f"  {tree}: restarted, ready after {ready:.1f} s", flush=True)
                    scrapes(w, "after a restart", tree)
                    # (3) a blip of every component: every tracker changed since the prepare
                    t = time.time()
                    blip = [(f"c{i}".encode(), orjson.dumps(
                        {"component": f"c{i}", "state": s, "ts": t - dt}))
                        for i in range(nc) for s, dt in (("down", 30), ("up", 25))]
                    publish(broker, topic, parts, blip)
                    ends2 = input_end_offsets(broker, topic, parts, msgs + blip)
                    wait_pipeline(w, topic, w.segments_topic, ends2, timeout=1800)
                    time.sleep(opts.backlog_wait)
                    scrapes(w, "after a backlog since", tree)
                finally:
                    w.stop()
    print(f"\nwall ms of curl scrapes (Prometheus's headers), median (min-max) of {opts.rounds}")
    med = statistics.median
    for (tree, label), v in rows.items():
        print(f"  {tree:<6} {label:<40} {med(v) * 1000:6.0f} ({min(v) * 1000:.0f}-"
              f"{max(v) * 1000:.0f})")
    return 0


def _timed_steps(steps: Iterator[None]) -> list[float]:
    """CPU seconds of each step of ``steps``."""
    out = []
    t = time.process_time()
    for _ in steps:
        out.append(time.process_time() - t)
        t = time.process_time()
    return out or [0.0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--components", type=int, default=100_000)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", nargs="+",
                    default=["restart", "decoded", "prepared", "backlog", "refreshed"],
                    choices=["restart", "decoded", "prepared", "backlog", "refreshed"],
                    help="which first scrapes to time: after a restart (trackers as stored "
                         "bytes), after the events (decoded), after the worker's prepare; "
                         "prepared, then a backlog changed every tracker (a blip of every "
                         "component, the trackers decoded as the pipeline leaves them): "
                         "scraped at once, or after the worker's refresh")
    ap.add_argument("--no-baseline", action="store_true", help="skip prometheus_client")
    ap.add_argument("--profile", metavar="SVG",
                    help="py-spy record this process during the scrapes (.svg: a flame graph, "
                         "else collapsed stacks); with --worker a directory: each worker "
                         "during each scrape")
    ap.add_argument("--worker", action="store_true",
                    help="over HTTP in real workers instead (see above)")
    ap.add_argument("--ab", metavar="TREE", help="--worker: also another checkout's worker")
    ap.add_argument("--wait", type=float, default=15.0,
                    help="--worker: seconds after ready of a restarted worker's first scrape")
    ap.add_argument("--backlog-wait", type=float, default=5.0,
                    help="--worker: seconds after a backlog was worked off of the first "
                         "scrape (Prometheus's come at any phase of its interval)")
    opts = ap.parse_args()
    if opts.worker:
        return worker_rounds(opts)
    gcpolicy.apply()  # the worker's thresholds (agents/cli/worker.py)
    now = time.time()
    t0 = time.perf_counter()
    catalog, (comps, svcs), after = build_state(opts.components, opts.services, now)
    print(f"state: {len(comps):,} component and {len(svcs):,} service trackers stored "
          f"({time.perf_counter() - t0:.1f} s to build)")
    spy = None
    if opts.profile:
        # py-spy from the venv's bin (dev extras); raw (collapsed stacks) if not .svg
        exe = Path(sys.executable).with_name("py-spy")
        fmt = "flamegraph" if opts.profile.endswith(".svg") else "raw"
        spy = subprocess.Popen([str(exe), "record", "-r", "200", "-f", fmt, "-o", opts.profile,
                                "--pid", str(os.getpid())])
        time.sleep(1.0)
    times: dict[str, list[float]] = {m: [] for m in opts.modes}
    times.update({"warm": [], "baseline": []})
    if "prepared" in opts.modes:
        times.update({"prepare": [], "prepare step (longest)": []})
    if "backlog" in opts.modes:
        times["backlog next"] = []
    if "refreshed" in opts.modes:
        times.update({"refresh": [], "refresh step (longest)": []})
    expected: bytes | None = None
    expected_after: bytes | None = None
    for r in range(opts.rounds):
        texts: list[bytes] = []
        texts_after: list[bytes] = []
        for mode in opts.modes:
            rt = fresh_runtime(catalog, comps, svcs)
            if mode == "decoded":
                # As the pipeline leaves them after the events: every tracker decoded.
                for key in comps:
                    rt.components.get(key)
                for key in svcs:
                    rt.services.get(key)
            registry = make_registry(rt)
            collector = registry.slawatch_collector  # type: ignore[attr-defined]
            collector.clock = lambda: now
            gc.collect()
            if mode == "prepared":
                # As the worker does once ready: prepare in steps, then the first scrape.
                steps = _timed_steps(collector.prepare())
                times["prepare"].append(sum(steps))
                times["prepare step (longest)"].append(max(steps))
                gc.collect()
            if mode in ("backlog", "refreshed"):
                for _ in collector.prepare():
                    pass
                render(registry)
                # The backlog: every stored value replaced (forget: as a rebalance would,
                # so the tables' versions move), every tracker decoded as the pipeline
                # leaves them.
                tables: tuple[TrackerTable[Any], ...] = (rt.components, rt.services)
                for table, data in zip(tables, after, strict=True):
                    table.table.data.update(data)
                    table.forget()
                    for key in data:
                        table.get(key)
                gc.collect()
                if mode == "refreshed":
                    steps = _timed_steps(collector.refresh())
                    times["refresh"].append(sum(steps))
                    times["refresh step (longest)"].append(max(steps))
                    gc.collect()
            t = time.process_time()
            first, _ = render(registry)
            times[mode].append(time.process_time() - t)
            (texts_after if mode in ("backlog", "refreshed") else texts).append(first)
            if mode == "backlog":
                t = time.process_time()
                texts_after.append(render(registry)[0])
                times["backlog next"].append(time.process_time() - t)
            if mode == "decoded":
                t = time.process_time()
                warm, _ = render(registry)
                times["warm"].append(time.process_time() - t)
                texts.append(warm)
            del rt, registry
        if not opts.no_baseline and not spy:
            rt = fresh_runtime(catalog, comps, svcs)
            gc.collect()
            t = time.process_time()
            expected = baseline(rt, now)
            times["baseline"].append(time.process_time() - t)
            del rt
        if texts_after and not opts.no_baseline and not spy:
            rt = fresh_runtime(catalog, *after)
            expected_after = baseline(rt, now)
            del rt
        if (expected is not None and any(x != expected for x in texts)) or (
                expected_after is not None and any(x != expected_after for x in texts_after)):
            print(f"round {r}: TEXT DIFFERS from prometheus_client's")
            return 1
        print(f"round {r}: " + "   ".join(f"{k} {v[-1] * 1000:5.0f} ms" for k, v in times.items()
                                          if v)
              + f"   ({len(first) / 1e6:.1f} MB, {first.count(NL):,} lines)")
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy.wait()
    med = statistics.median
    what = {"restart": "first scrape, trackers as stored bytes (after a restart)",
            "prepared": "first scrape after the worker's prepare (from stored bytes)",
            "prepare": "  the prepare itself, all steps",
            "prepare step (longest)": "  its longest step (the event loop held)",
            "decoded": "first scrape, trackers decoded (after the events)",
            "backlog": "prepared, a backlog changed every tracker: first scrape",
            "backlog next": "  the scrape after it",
            "refreshed": "the same after the worker's refresh",
            "refresh": "  the refresh itself, all steps",
            "refresh step (longest)": "  its longest step",
            "warm": "the next scrape",
            "baseline": "prometheus_client (rt.report + generate_latest)"}
    print(f"\nCPU ms, median of {opts.rounds} (min-max); target for a first scrape < 1000 ms")
    for k, v in times.items():
        if v:
            print(f"  {what[k]:<58} {med(v) * 1000:6.0f} ({min(v) * 1000:.0f}-{max(v) * 1000:.0f})")
    if times["baseline"]:
        b = med(times["baseline"])
        print("  first scrapes = " + " / ".join(f"{med(times[m]) / b:.3f}" for m in opts.modes)
              + " of prometheus_client's time; every text identical to it: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
