"""Pipeline throughput, backlog, latency and memory: slawatch's worker vs the raw client.

    .venv/bin/python bench/throughput.py                 # 200k events, 3 rounds, ~3 min
    .venv/bin/python bench/throughput.py --events 1000000 --skip-latency
    .venv/bin/python bench/throughput.py --scale         # 100k components, 10k services
    .venv/bin/python bench/throughput.py --sweep         # the shape sweep (table + worst point)

Everything runs here, nothing to install: an embedded tansu broker, real worker
processes, kafka-python (the product's publisher) and aiokafka (the raw baseline).
Measured in one run, so ratios are comparable even on a busy machine; (a) and (b)
alternate ``--rounds`` times and the medians are compared:

(a) raw       aiokafka ``getmany()`` in a consumer group + ``orjson.loads`` per record
              + a commit per batch: the ceiling of any Python consumer here.
(b) pipeline  a `slawatch worker` working off the same backlog: decode, classify,
              component trackers, the repartition to services, service ledgers, both
              changelogs and the commits. Rate = events / (last batch - first batch), as
              the worker reports it (/api/worker); "backlog" adds the start-up.
(c) latency   events published at a steady rate (default 2,000/s) to a second worker
              whose catalog holds 50 one-component services; an event counts as
              visible when /metrics shows it: each down event opens an outage of its
              service, so the j-th down event of component c is visible once
              ``slawatch_service_outages_total{service="lat<c>"}`` grew by j. Latency =
              the first scrape that shows the event - its publish time (scrapes every
              10 ms, so figures are up to ~15 ms pessimistic: the interval and a
              scrape's own time).
(d) memory    the worker's peak RSS (VmHWM), and with --scale the RSS and the /metrics
              scrape time of a catalog of 100,000 components and 10,000 services.
(e) --sweep   (a) and (b) over estate shapes, one factor at a time around a base shape:
              service size (components per service: 1, 3, 10, 30; all / any / k-of-n
              mixed), fan-out (services per component: 1, 2, 5), input partitions (1, 4,
              8, 16, the topic made before the worker), components (400 to 20,000), storm
              or 10% changes, 200k or 1M events. Prints a table (shape, raw ev/s,
              pipeline ev/s, ratio, RSS) and the worst point. ``--profile DIR`` records
              each point's workers with py-spy while they work off the events.
              ``--inproc`` adds, per point, what a consumer reaches inside a worker
              process (bench/inworker.py): "raw-ws" raw_getmany with the worker's fetch
              settings (bench process), "in-raw" a raw aiokafka consumer of the
              worker's settings on the worker's event loop, "in-thread" the same on
              Faust's consumer thread, "fetch" the worker's own consumer path (Faust,
              the batch consumer) with a stage 1 that only decodes. ``--ab TREE``
              adds another checkout's pipeline (the baseline), alternated in each round.
(f) --latency-under-load FACTOR=VALUE   (c) alone, then while that sweep point runs at
              full speed on another worker (another app id and consumer group, the same
              broker and cores), alternated ``--rounds`` times.

The event mix is an alert storm by default: every event changes its component's state
(``--change-ratio 1``), and each component feeds 2 services, so every event produces
2 segments on the repartition topic. ``--change-ratio 0.1`` is a calmer day.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.clients.broker import EmbeddedBroker, free_port  # noqa: E402
from agents.worker.partitioning import Partitioner  # noqa: E402
from bench.inworker import consume  # noqa: E402

# -- catalog and events -------------------------------------------------------------


def make_catalog(components: int, services: int, fanout: int, latency_services: int) -> str:
    """A catalog (JSON, which is YAML too): ``services`` services over ``components``
    components, each component in about ``fanout`` services (any-of and k-of-n groups),
    plus one-component services for the latency probe."""
    comps: dict[str, Any] = {f"c{i}": {"team": "bench", "kpi": 0.99} for i in range(components)}
    services = services if components else 0
    comps.update({f"lat{i}": {"team": "probe", "kpi": 0.99} for i in range(latency_services)})
    svcs: dict[str, Any] = {}
    per = max(1, components * fanout // max(1, services))
    for s in range(services):
        start = s * components // max(1, services)
        members = list(dict.fromkeys(f"c{(start + j) % components}" for j in range(per)))
        if s % 2 == 0 or len(members) < 2:
            req: Any = {"any": members}
        else:
            req = {"at_least": len(members) - 1, "of": members}
        svcs[f"s{s}"] = {"kind": "external", "customers": ["bench"],
                         "sla": {"target": 0.999, "period": "30d"}, "requires": [req]}
    for i in range(latency_services):
        svcs[f"lat{i}"] = {"kind": "internal", "customers": ["bench"],
                           "sla": {"target": 0.99, "period": "30d"}, "requires": [f"lat{i}"]}
    return orjson.dumps({"components": comps, "services": svcs}).decode()


def make_shape_catalog(components: int, size: int, fanout: int) -> str:
    """A catalog of services of ``size`` components each, every component in ``fanout``
    services; requirements rotate over all-of, any-of and k-of-n (half, rounded up)."""
    comps: dict[str, Any] = {f"c{i}": {"team": "bench", "kpi": 0.99} for i in range(components)}
    n_services = max(1, components * fanout // size)
    svcs: dict[str, Any] = {}
    for s in range(n_services):
        # consecutive blocks, wrapping: component i lands in about ``fanout`` services
        members = list(dict.fromkeys(f"c{(s * size + j) % components}" for j in range(size)))
        kind = s % 3
        if len(members) == 1:
            req: Any = members[0]
        elif kind == 0:
            req = {"all": members}
        elif kind == 1:
            req = {"any": members}
        else:
            req = {"at_least": (len(members) + 1) // 2, "of": members}
        svcs[f"s{s}"] = {"kind": "external", "customers": ["bench"],
                         "sla": {"target": 0.999, "period": "30d"}, "requires": [req]}
    return orjson.dumps({"components": comps, "services": svcs}).decode()


def iter_events(n: int, components: int, change_ratio: float, start: float,
                seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """The storm, one (key, value) at a time over an hour of event time; a share
    ``change_ratio`` of the events flip their component's state."""
    rng = random.Random(seed)
    state = ["up"] * components
    span = 3600.0
    for i in range(n):
        c = rng.randrange(components)
        if rng.random() < change_ratio:
            state[c] = "down" if state[c] == "up" else "up"
        ts = start + span * i / n
        cid = f"c{c}"
        yield cid.encode(), orjson.dumps({"component": cid, "state": state[c],
                                          "ts": round(ts, 3), "source": "bench"})


def make_events(n: int, components: int, change_ratio: float, start: float,
                seed: int = 1) -> list[tuple[bytes, bytes]]:
    return list(iter_events(n, components, change_ratio, start, seed))


def publish(broker: EmbeddedBroker, topic: str, partitions: int,
            msgs: list[tuple[bytes, bytes]]) -> float:
    """Publish with slawatch's own publisher; returns events/s."""
    from agents.clients.publish import KafkaSettings, Publisher

    pub = Publisher(KafkaSettings(broker=broker.url), topic)
    t0 = time.perf_counter()
    pub.send_many(msgs)
    pub.flush()
    rate = len(msgs) / (time.perf_counter() - t0)
    if pub.failed:
        raise SystemExit(f"publishing failed: {pub.first_error}")
    pub.close()
    return rate


# -- (a) the raw client -------------------------------------------------------------


#: The fetch settings of the worker's consumer (Faust's ``consumer_max_fetch_size``, the
#: fetch wait of ``agents/transport/faust_patches.py``), for the "raw-ws" measurement.
WORKER_FETCH = {"max_partition_fetch_bytes": 4 * 1024 * 1024, "fetch_max_wait_ms": 100}


async def raw_getmany(bootstrap: str, topic: str, n: int, **settings: Any) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{time.time()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
                                **settings)
    await consumer.start()
    try:
        return (await consume(consumer, n))[1]
    finally:
        await consumer.stop()


# -- the worker ---------------------------------------------------------------------


class Worker:
    def __init__(self, broker: EmbeddedBroker, catalog: Path, workdir: Path, partitions: int,
                 app_id: str, events_topic: str = "component-events",
                 tree: Path | None = None, inworker: str | None = None,
                 inworker_env: dict[str, str] | None = None) -> None:
        # ``tree``: another checkout (with its own .venv) whose worker to run instead
        # ``inworker``: a MODE of bench/inworker.py (a measurement inside the worker)
        self.tree = tree or ROOT
        python = str(self.tree / ".venv" / "bin" / "python") if tree else sys.executable
        self.segments_topic = f"{app_id}-segments"
        self.reroute_topic = f"{app_id}-component-events-rerouted"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{app_id}.log"
        entry = ([str(ROOT / "bench" / "inworker.py"), inworker] if inworker
                 else ["-m", "agents.cli.main"])
        cmd = [python, *entry, "worker", "--broker", broker.url,
               "--catalog", str(catalog), "--web-port", str(self.port), "--web-host", "127.0.0.1",
               "--data-dir", str(workdir / app_id), "--app-id", app_id,
               "--partitions", str(partitions), "--store", "memory", "--log-level", "warning",
               "--broker-kind", "tansu",
               "--events-topic", events_topic, "--segments-topic", self.segments_topic,
               "--dlq-topic", f"{app_id}-dlq"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLAWATCH_")}
        env.update(inworker_env or {})
        if os.environ.get("BENCH_FAUST_SETTINGS"):  # measuring a setting
            env["SLAWATCH_FAUST_SETTINGS"] = os.environ["BENCH_FAUST_SETTINGS"]
        spy = os.environ.get("BENCH_PY_SPY")  # e.g. /tmp/worker.txt: profile the worker
        if spy:
            cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "100", "-f", "raw",
                   "-o", spy, "--", *cmd]
        self.started = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.tree, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return bytes(resp.read())

    def status(self) -> dict[str, Any]:
        return dict(orjson.loads(self.get("/api/worker")))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise SystemExit(f"worker exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if self.get("/readyz", 2.0):
                    return time.monotonic() - self.started
            time.sleep(0.1)
        raise SystemExit(f"worker not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def rss(self) -> tuple[float, float]:
        """(current, peak) resident set size in MiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        cur = int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]
        peak = int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]
        return cur, peak

    def cpu(self) -> float:
        """CPU seconds the worker process has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.alive():
            # py-spy writes its profile on SIGINT; it passes nothing on to the worker
            spy = os.environ.get("BENCH_PY_SPY")
            self.proc.send_signal(signal.SIGINT if spy else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def pipeline_rate(events: int, stats: dict[str, Any]) -> float:
    """Events per second of a worker's batch path, from when its first records were
    fetched (as the raw baseline counts from its first fetch with records) to the end of
    its last batch. A tree without ``fetched_at`` counts from the start of its first
    batch, one without ``begun_at`` from the end of its first batch (which left that
    batch's work out: with stage 1 holding partitions together in event time, the
    first batch handled can be a large part of a storm)."""
    start = float(stats.get("fetched_at") or stats.get("begun_at") or stats["first_at"])
    return events / max(1e-9, float(stats["last_at"]) - start)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone or 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def caught_up(status: dict[str, Any], topic: str, ends: dict[int, int]) -> bool:
    pos = status.get("position", {}).get(topic, {})
    return all(pos.get(str(p), 0) >= end for p, end in ends.items() if end)


#: Seconds between status polls of a worker working off a backlog.
POLL_INTERVAL = 0.25


def wait_pipeline(worker: Worker, events_topic: str, segments_topic: str,
                  input_ends: dict[int, int], timeout: float,
                  reroute_ends: dict[int, int] | None = None) -> dict[str, Any]:
    """Wait until both stages processed everything (and the re-route topic, when every
    message is forwarded through it); returns the last status."""
    deadline = time.monotonic() + timeout
    last_print = 0.0
    while time.monotonic() < deadline:
        if not worker.alive():
            raise SystemExit(f"worker exited:\n{worker.log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            st = worker.status()
            done1 = caught_up(st, events_topic, input_ends)
            if reroute_ends is not None:
                # A worker that says what it forwarded (it classifies where it reads
                # what it owns) is read to that; an older one forwards every message.
                fwd = st.get("rerouted_produced", {}).get(worker.reroute_topic)
                ends = reroute_ends if fwd is None else {int(p): e for p, e in fwd.items()}
                done1 = done1 and caught_up(st, worker.reroute_topic, ends)
            seg_ends = {int(p): e for p, e in st.get("segments_produced", {})
                        .get(segments_topic, {}).items()}
            if done1 and st.get("inflight_batches", 1) == 0 and caught_up(st, segments_topic, seg_ends):
                return st
            if time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print(f"    ... {st.get('events', 0):,} events through stage 1", flush=True)
        # Each poll is an HTTP request the measured worker serves: at 20 a second they
        # took 2-4% of its CPU. The rate comes from the worker's own first and last
        # batch times; only the backlog time is read to this resolution.
        time.sleep(POLL_INTERVAL)
    raise SystemExit(f"pipeline did not catch up in {timeout} s:\n{worker.log.read_text()[-3000:]}")


def changelog_records(broker: EmbeddedBroker, app_id: str) -> dict[str, int]:
    """Records in each changelog topic of ``app_id`` (the sum of its partitions' end
    offsets): what a restart reads back before it is ready."""
    from kafka import KafkaConsumer, TopicPartition

    topics = sorted(t for t in broker.list_topics()
                    if t.startswith(f"{app_id}-") and t.endswith("-changelog"))
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        out = {}
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            out[topic.removeprefix(f"{app_id}-")] = sum(consumer.end_offsets(parts).values())
        return out
    finally:
        consumer.close()


def input_end_offsets(broker: EmbeddedBroker, topic: str, partitions: int,
                      msgs: list[tuple[bytes, bytes]]) -> dict[int, int]:
    """The end offset per partition: the publisher partitions by murmur2(key), and the
    topic was empty, so it is the number of messages per partition."""
    part = Partitioner(partitions)
    ends: dict[int, int] = {}
    for key, _ in msgs:
        p = part(key.decode())
        ends[p] = ends.get(p, 0) + 1
    return ends


# -- (c) latency --------------------------------------------------------------------


def outages_by_service(worker: Worker, prefix: str) -> dict[str, float]:
    """``slawatch_service_outages_total`` of each service whose name starts with
    ``prefix``, from one ``/metrics`` scrape."""
    out: dict[str, float] = {}
    label = f'service="{prefix}'
    for line in worker.get("/metrics").decode().splitlines():
        if line.startswith("slawatch_service_outages_total{") and label in line:
            name = line.split('service="', 1)[1].split('"', 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def watch_run(broker: EmbeddedBroker, worker: Worker, topic: str, rate: int, seconds: float,
              latency_services: int, clock: Callable[[], float] = time.perf_counter
              ) -> tuple[list[tuple[float, float, int]], list[float | None]]:
    """Publish ``rate`` events/s for ``seconds`` over ``latency_services`` one-component
    services, each event flipping its component, while a thread scrapes ``/metrics``
    every 10 ms. Returns per down event (its publish time, its ``ts``, its component
    index) and the start of the first scrape that showed it (None: never seen), both
    by ``clock``.

    Each down event opens one outage of its own service, so the j-th down event of
    component ``c`` is visible once service ``lat<c>``'s outage counter has grown by
    j: every event is matched to its own service's counter. (Matching the k-th
    published down event of all services to the k-th outage seen anywhere, as this
    did before, pairs an event with whichever other event became visible then: it
    hides a partition that lags behind the others, and is never more pessimistic.)
    """
    import threading

    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1, acks=1)
    names = [f"lat{c}" for c in range(latency_services)]
    base = outages_by_service(worker, "lat")
    pubs: list[tuple[float, float, int]] = []
    #: per component, the indexes in ``pubs`` of its down events, in publish order
    downs: list[list[int]] = [[] for _ in names]
    seen_at: list[float | None] = []
    stop = threading.Event()
    stop_at = [0.0]

    def scrape() -> None:
        shown = [0] * len(names)  # down events of each component seen so far
        visible = 0
        while not stop.is_set() or visible < len(pubs):
            t = clock()
            try:
                now = outages_by_service(worker, "lat")
            except OSError:
                now = {}
            for c, name in enumerate(names):
                n = min(int(now.get(name, 0.0) - base.get(name, 0.0)), len(downs[c]))
                while shown[c] < n:
                    seen_at[downs[c][shown[c]]] = t
                    shown[c] += 1
                    visible += 1
            if stop.is_set() and clock() - stop_at[0] > 10:
                break
            time.sleep(0.01)

    th = threading.Thread(target=scrape, daemon=True)
    th.start()
    state = ["up"] * latency_services
    t0 = time.perf_counter()
    n = int(rate * seconds)
    ts0 = time.time() - 60
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        c = i % latency_services
        state[c] = "down" if state[c] == "up" else "up"
        cid = names[c]
        ts = ts0 + i / rate
        value = orjson.dumps({"component": cid, "state": state[c], "ts": ts})
        if state[c] == "down":
            # the slot first, then its index: the scraper reads only indexes it finds
            seen_at.append(None)
            pubs.append((clock(), ts, c))
            downs[c].append(len(pubs) - 1)
        producer.send(topic, key=cid.encode(), value=value)
        if i % 20 == 19:
            producer.flush()
    producer.flush()
    stop_at[0] = clock()
    stop.set()
    th.join(30)
    producer.close()
    return pubs, seen_at


def latency_run(broker: EmbeddedBroker, worker: Worker, topic: str, rate: int, seconds: float,
                latency_services: int) -> tuple[list[float], int]:
    """Publish ``rate`` events/s for ``seconds``; returns per-down-event latencies (s)
    and how many down events were never seen."""
    pubs, seen_at = watch_run(broker, worker, topic, rate, seconds, latency_services)
    lat = [s - p for s, (p, _, _) in zip(seen_at, pubs, strict=True) if s is not None]
    return lat, len(pubs) - len(lat)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- main ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--components", type=int, default=400)
    ap.add_argument("--services", type=int, default=400)
    ap.add_argument("--fanout", type=int, default=2, help="services per component")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--input-partitions", type=int, default=0,
                    help="partitions of the input topic (default: --partitions); another "
                         "count makes the worker forward every message")
    ap.add_argument("--change-ratio", type=float, default=1.0)
    ap.add_argument("--latency-rate", type=int, default=2000)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3,
                    help="raw and pipeline runs, alternated; medians are reported (the raw "
                         "rate alone varied 560k-1.1M/s between runs on this machine)")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--scale", action="store_true",
                    help="also: RSS and scrape time with 100k components / 10k services")
    ap.add_argument("--scale-components", type=int, default=100_000)
    ap.add_argument("--scale-services", type=int, default=10_000)
    ap.add_argument("--sweep", action="store_true",
                    help="measure the shape sweep instead (see (e) above); --rounds per point")
    ap.add_argument("--worker-partitions", type=int, default=8,
                    help="the worker's --partitions in the sweep (the input topic's count "
                         "varies); 0: the same as each point's input topic")
    ap.add_argument("--sweep-only", action="append", default=[], metavar="FACTOR=VALUE",
                    help="run only the sweep points with this factor value (e.g. size=30, "
                         "base for the base shape); repeatable, any match runs")
    ap.add_argument("--profile", metavar="DIR",
                    help="sweep: py-spy record the worker of each point while it works off "
                         "the events (DIR/sweep-<point>-<round>.txt, collapsed stacks)")
    ap.add_argument("--inproc", action="store_true",
                    help="sweep: also measure, inside a worker process (bench/inworker.py), "
                         "a raw aiokafka consumer on the worker's loop and on Faust's "
                         "consumer thread, and the worker's fetch path with a stage 1 that "
                         "only decodes")
    ap.add_argument("--ab", metavar="TREE", type=Path,
                    help="sweep: also run the pipeline of another checkout TREE (its own "
                         ".venv) in every round, alternated with this tree's")
    ap.add_argument("--latency-under-load", action="append", default=[], metavar="FACTOR=VALUE",
                    help="measure (f) instead: latency alone and while this sweep point runs "
                         "at full speed on another worker (e.g. base, fanout=5)")
    ap.add_argument("--latency-ab", metavar="TREE", type=Path,
                    help="measure (c) only: this tree's worker against the worker of another "
                         "checkout TREE (its own .venv), alternated --rounds times, same broker "
                         "and the same measurement")
    opts = ap.parse_args()
    if opts.latency_ab:
        return latency_ab(opts)
    if opts.latency_under_load:
        return latency_under_load(opts)
    if opts.sweep:
        return sweep(opts)

    lat_n = 50
    results: list[tuple[str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="slawatch-bench-"))
    catalog = work / "catalog.yaml"
    catalog.write_text(make_catalog(opts.components, opts.services, opts.fanout, lat_n))
    print(f"{opts.events:,} events over {opts.components} components, {opts.services} services "
          f"(fan-out {opts.fanout}), change ratio {opts.change_ratio}, "
          f"{opts.partitions} partitions; work dir {work}", flush=True)
    msgs = make_events(opts.events, opts.components, opts.change_ratio, time.time() - 7200)
    workers: list[Worker] = []
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        try:
            topic = "component-events"
            n_in = opts.input_partitions or opts.partitions
            broker.create_topics({topic: n_in})
            pub_rate = publish(broker, topic, n_in, msgs)
            ends = input_end_offsets(broker, topic, n_in, msgs)
            # Another count than the worker's: every message is forwarded once.
            rerouted = (input_end_offsets(broker, topic, opts.partitions, msgs)
                        if n_in != opts.partitions else None)
            print(f"published {len(msgs):,} events at {pub_rate:,.0f}/s", flush=True)

            raws: list[float] = []
            pipes: list[float] = []
            for k in range(max(1, opts.rounds)):
                raw = asyncio.run(raw_getmany(broker.bootstrap, topic, len(msgs)))
                print(f"(a) raw getmany + orjson: {raw:,.0f} events/s", flush=True)
                if workers:
                    workers[-1].stop()  # one worker at a time; RSS is the last round's
                w = Worker(broker, catalog, work, opts.partitions, f"bench-pipeline-{k}")
                workers.append(w)
                ready = w.wait_ready()
                st = wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800,
                                   reroute_ends=rerouted)
                backlog = time.monotonic() - w.started
                stats = st["stats"]
                pipe = pipeline_rate(opts.events, stats)
                print(f"(b) pipeline: {pipe:,.0f} events/s (ratio {pipe / raw:.3f}); backlog "
                      f"worked off {backlog:.1f} s after start (ready after {ready:.1f} s)",
                      flush=True)
                raws.append(raw)
                pipes.append(pipe)
            raw, pipe = statistics.median(raws), statistics.median(pipes)
            per_round = ", ".join(f"{p / r:.2f}" for p, r in zip(pipes, raws, strict=True))
            results += [
                ("publisher (slawatch publish path)", f"{pub_rate:,.0f} events/s"),
                (f"(a) raw aiokafka getmany + orjson, median of {len(raws)}", f"{raw:,.0f} events/s"),
                (f"(b) slawatch pipeline (both stages, changelogs), median of {len(pipes)}",
                 f"{pipe:,.0f} events/s"),
                ("    ratio of the medians", f"{pipe / raw:.3f}  (target >= 0.25)"),
                ("    ratio in each round", per_round),
                (f"    backlog of {opts.events:,} from worker start (last round)", f"{backlog:.1f} s "
                 f"(ready {ready:.1f} s)"),
                ("    fetches / batches / records", f"{stats['fetches']:,} / {stats['batches']:,} / "
                 f"{stats['records']:,}"),
                ("    time in handlers / waiting for fetches", f"{stats['handle_seconds']:.1f} s / "
                 f"{stats['wait_seconds']:.1f} s"),
            ]
            cur, peak = w.rss()
            results.append(("(d) worker RSS after the backlog now / peak", f"{cur:.0f} / {peak:.0f} MiB"))
            w.stop()
            if not opts.skip_latency:
                # Its own worker over the latency services only: /metrics is scraped every
                # 10 ms, which on the 450-service catalog would itself load the worker.
                lat_catalog = work / "latency.yaml"
                lat_catalog.write_text(make_catalog(0, 0, 1, lat_n))
                broker.create_topics({"latency-events": opts.partitions})
                lw = Worker(broker, lat_catalog, work, opts.partitions, "bench-latency",
                            events_topic="latency-events")
                workers.append(lw)
                lw.wait_ready()
                lat, missing = latency_run(broker, lw, "latency-events", opts.latency_rate,
                                           opts.latency_seconds, lat_n)
                lw.stop()
                results += [
                    (f"(c) latency at {opts.latency_rate:,}/s, p50", f"{pct(lat, 0.5) * 1000:.0f} ms"),
                    ("    p99", f"{pct(lat, 0.99) * 1000:.0f} ms  (target < 1000 ms)"),
                    ("    max", f"{max(lat, default=float('nan')) * 1000:.0f} ms "
                     f"({len(lat)} down events measured, {missing} not seen)"),
                ]

            if opts.scale:
                results += scale_run(broker, work, opts)
        finally:
            for w in workers:
                w.stop()
    width = max(len(label) for label, _ in results)
    print()
    for label, value in results:
        print(f"{label:<{width}}  {value}")
    return 0


#: The sweep's base shape, and the values each factor takes in turn (the others at base).
SWEEP_BASE: dict[str, Any] = {"components": 2000, "size": 10, "fanout": 2, "partitions": 8,
                              "change": 1.0, "events": 200_000}
SWEEP_FACTORS: dict[str, tuple[Any, ...]] = {
    "size": (1, 3, 10, 30),
    "fanout": (1, 2, 5),
    "partitions": (1, 4, 8, 16),
    "components": (400, 2000, 20_000),
    "change": (1.0, 0.1),
    "events": (200_000, 1_000_000),
}


def sweep_shapes(only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every shape of the sweep once: the base, then one factor changed at a time.
    ``only`` (``["size=30", "base"]``) keeps the shapes that match any of its items."""
    shapes = [dict(SWEEP_BASE)]
    for factor, values in SWEEP_FACTORS.items():
        for v in values:
            shape = {**SWEEP_BASE, factor: v}
            if shape not in shapes:
                shapes.append(shape)
    if not only:
        return shapes

    def matches(shape: dict[str, Any], item: str) -> bool:
        if item == "base":
            return shape == SWEEP_BASE
        factor, _, value = item.partition("=")
        if factor not in SWEEP_FACTORS:
            raise SystemExit(f"--sweep-only {item}: factor not one of {sorted(SWEEP_FACTORS)}")
        return float(shape[factor]) == float(value)

    return [s for s in shapes if any(matches(s, item) for item in only)]


def _shape_label(s: dict[str, Any]) -> str:
    mix = "storm" if s["change"] >= 1.0 else f"{s['change']:.0%} changes"
    return (f"{s['components']:>6} comps, size {s['size']:>2}, fan-out {s['fanout']}, "
            f"{s['partitions']:>2} parts, {mix}, {s['events'] // 1000}k")


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (dev extras) sampling ``pid`` into ``out`` as collapsed stacks, without
    pausing it (--nonblocking), every thread, with native (C) frames where it can."""
    out.parent.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("py-spy")
    rate = os.environ.get("BENCH_SPY_RATE", "100")  # samples a second
    return subprocess.Popen([str(exe), "record", "--nonblocking", "-r", rate, "-f", "raw",
                             "-o", str(out), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


#: What a sweep round measures, in this order (rotated by one each round and each
#: point, so no kind always runs first or right after another: with one round, each
#: runs first at a third of the points): "raw" (``raw_getmany`` in the bench process),
#: "pipeline" (this tree's worker), with ``--inproc`` "raw-ws" (``raw_getmany`` with the
#: worker's fetch settings), "in-raw", "in-thread", "fetch" (bench/inworker.py modes
#: raw, rawthread, fetch) and with ``--ab TREE`` "base" (TREE's worker).
INPROC_KINDS = ("raw-ws", "in-raw", "in-thread", "fetch")


#: Pipeline rates from the start of its first batch (``BatchStats.begun_at``) by run name.
FROM_START: dict[str, float] = {}


def sweep_kinds(opts: argparse.Namespace) -> list[str]:
    kinds = ["raw"]
    if opts.inproc:
        kinds += INPROC_KINDS
    kinds.append("pipeline")
    if opts.ab:
        kinds.append("base")
    return kinds


def run_kind(kind: str, broker: EmbeddedBroker, work: Path, name: str, catalog: Path,
             topic: str, msgs: list[tuple[bytes, bytes]], wp: int, ends: dict[int, int],
             rerouted: Any, opts: argparse.Namespace) -> tuple[float, float]:
    """One measurement of a sweep point: (events/s, the worker's peak RSS in MiB, 0 for
    the raw client)."""
    if kind in ("raw", "raw-ws"):
        settings = WORKER_FETCH if kind == "raw-ws" else {}
        return asyncio.run(raw_getmany(broker.bootstrap, topic, len(msgs), **settings)), 0.0
    mode = {"in-raw": "raw", "in-thread": "rawthread", "fetch": "fetch"}.get(kind)
    out = work / f"{name}.out.json"
    env = {}
    events_topic = topic
    if mode is not None:
        env = {"BENCH_TOPIC": topic, "BENCH_EVENTS": str(len(msgs)), "BENCH_OUT": str(out)}
    if mode in ("raw", "rawthread"):
        # The worker's own input is an empty topic; the raw consumer inside reads ``topic``.
        events_topic = f"{name}-idle"
    w = Worker(broker, catalog, work, wp, name, events_topic=events_topic,
               tree=opts.ab if kind == "base" else None, inworker=mode, inworker_env=env)
    spy = None
    try:
        w.wait_ready()
        cpu0 = (cpu_seconds(w.proc.pid), cpu_seconds(broker.pid or 0))
        if opts.profile:
            spy = start_profile(w.proc.pid, Path(opts.profile) / f"{name}.txt")
        if env:
            deadline = time.monotonic() + 600
            while not out.exists():
                if not w.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"in-worker raw consumer failed:\n"
                                     f"{w.log.read_text()[-3000:]}")
                time.sleep(POLL_INTERVAL)
            rate = float(orjson.loads(out.read_bytes())["rate"])
        else:
            st = wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800,
                               reroute_ends=rerouted)
            stats = st["stats"]
            rate = pipeline_rate(len(msgs), stats)
            if os.environ.get("BENCH_STATS"):  # the batch path's counters of this run
                # CPU of the worker and of the broker per event, from ready to caught up:
                # steadier than the rate on a shared machine (time waiting for a core
                # is not in it)
                cpu = (cpu_seconds(w.proc.pid) - cpu0[0],
                       cpu_seconds(broker.pid or 0) - cpu0[1])
                print(f"    {name}: CPU per event: worker {cpu[0] / len(msgs) * 1e6:.2f} µs, "
                      f"broker {cpu[1] / len(msgs) * 1e6:.2f} µs",
                      flush=True)
                print(f"    {name}: " + ", ".join(
                    f"{k} {v:.2f}" if isinstance(v, float) and v < 1e6 else f"{k} {v}"
                    for k, v in stats.items() if not k.endswith("_at")), flush=True)
            if opts.inproc and kind == "pipeline" and stats.get("begun_at"):
                # From the start of the first batch, as the other kinds measure.
                FROM_START[name] = len(msgs) / max(1e-9, stats["last_at"] - stats["begun_at"])
        if spy is not None:
            stop_profile(spy)
            spy = None
        return rate, w.rss()[1]
    finally:
        if spy is not None:
            stop_profile(spy)
        w.stop()


def sweep(opts: argparse.Namespace) -> int:
    """(e): raw and pipeline over every shape of ``sweep_shapes``; the table and the worst.
    With ``--inproc`` also the raw consumer inside a worker process and the worker's fetch
    path alone; with ``--ab TREE`` also TREE's pipeline (see ``INPROC_KINDS``)."""
    work = Path(tempfile.mkdtemp(prefix="slawatch-sweep-"))
    kinds = sweep_kinds(opts)
    rows: list[tuple[str, dict[str, float], float]] = []
    print(f"shape sweep, {max(1, opts.rounds)} round(s) a point, worker --partitions "
          f"{opts.worker_partitions}; measured: {', '.join(kinds)}"
          + (f" (base: {opts.ab})" if opts.ab else "") + f"; work dir {work}", flush=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        chosen = sweep_shapes(opts.sweep_only)
        for i, shape in enumerate(sweep_shapes()):  # i fixes the seed: a point's events
            if shape not in chosen:                 # are the same when run alone
                continue
            catalog, topic, msgs, wp, ends, rerouted = stage_point(
                broker, work, f"sweep-{i}", shape, i, opts.worker_partitions)
            rates: dict[str, list[float]] = {k: [] for k in kinds}
            rss = 0.0
            for k in range(max(1, opts.rounds)):
                shift = (k + i) % len(kinds)
                order = kinds[shift:] + kinds[:shift]
                loads = []
                for kind in order:
                    name = f"sweep-{i}-{k}-{kind}"
                    rate, peak = run_kind(kind, broker, work, name, catalog,
                                          topic, msgs, wp, ends, rerouted, opts)
                    rates[kind].append(rate)
                    if name in FROM_START:
                        rates.setdefault("pipe-begun", []).append(FROM_START[name])
                    loads.append(os.getloadavg()[0])
                    if kind == "pipeline":
                        rss = max(rss, peak)
                print(f"    round {k}: " + ", ".join(f"{kind} {v[-1]:,.0f}"
                                                     for kind, v in rates.items())
                      + f"; load average {min(loads):.1f}-{max(loads):.1f}", flush=True)
            med = {kind: statistics.median(v) for kind, v in rates.items()}
            rows.append((_shape_label(shape), med, rss))
            print(f"  {rows[-1][0]}: " + ", ".join(f"{kind} {v:,.0f}/s" for kind, v in med.items())
                  + f", ratio {med['pipeline'] / med['raw']:.3f}, peak RSS {rss:.0f} MiB",
                  flush=True)
    cols = [k for k in kinds if k not in ("raw", "pipeline", "base")]
    if opts.inproc:
        cols.append("pipe-begun")  # the pipeline from the start of its first batch
    head = (f"{'shape':<58} {'raw ev/s':>10} "
            + "".join(f"{c + ' ev/s':>16}" for c in cols)
            + f" {'pipeline ev/s':>14} {'ratio':>6}"
            + (f" {'base ev/s':>10} {'base':>6}" if opts.ab else "") + f" {'RSS MiB':>8}")
    print()
    print(head)
    for label, med, rss in rows:
        raw = med["raw"]
        print(f"{label:<58} {raw:>10,.0f} "
              + "".join(f"{med.get(c, float('nan')):>16,.0f}" for c in cols)
              + f" {med['pipeline']:>14,.0f} {med['pipeline'] / raw:>6.3f}"
              + (f" {med['base']:>10,.0f} {med['base'] / raw:>6.3f}" if opts.ab else "")
              + f" {rss:>8.0f}")
    ratios = sorted((med["pipeline"] / med["raw"], label) for label, med, _ in rows)
    worst = ratios[0]
    print(f"\nworst: {worst[1]} at {worst[0]:.3f} of raw (target >= 0.25); "
          f"median of the sweep {statistics.median(r for r, _ in ratios):.3f} (target >= 0.5)")
    return 0


def stage_point(broker: EmbeddedBroker, work: Path, name: str, shape: dict[str, Any],
                index: int, worker_partitions: int
                ) -> tuple[Path, str, list[tuple[bytes, bytes]], int, Any, Any]:
    """A sweep point's catalog and backlog on the broker: the catalog file, the input
    topic (made before the worker, as ops do), the events, the worker's partition count,
    and the end offsets the pipeline must reach. ``index`` fixes the seed, so a point's
    events are the same whichever run stages it. With another partition count than the
    worker's every message is forwarded once, and the pipeline is done when the re-route
    topic is read too (the last item; None when nothing is forwarded)."""
    catalog = work / f"{name}.json"
    catalog.write_text(make_shape_catalog(shape["components"], shape["size"], shape["fanout"]))
    topic = f"{name}-events"
    broker.create_topics({topic: shape["partitions"]})
    msgs = make_events(shape["events"], shape["components"], shape["change"],
                       time.time() - 7200, seed=index + 1)
    publish(broker, topic, shape["partitions"], msgs)
    ends = input_end_offsets(broker, topic, shape["partitions"], msgs)
    wp = worker_partitions or shape["partitions"]
    rerouted = (input_end_offsets(broker, topic, wp, msgs)
                if shape["partitions"] != wp else None)
    return catalog, topic, msgs, wp, ends, rerouted


def latency_under_load(opts: argparse.Namespace) -> int:
    """(f): latency at ``--latency-rate`` on a worker of its own, first alone, then while
    sweep points (``--latency-under-load FACTOR=VALUE``, one shape) run at full speed
    on another worker, another app id (consumer group), on the same broker and cores;
    alternated ``--rounds`` times. Each load run is a fresh worker working off the
    point's whole backlog; they follow each other until the latency run ends."""
    import threading

    shapes = sweep_shapes(opts.latency_under_load)
    if len(shapes) != 1:
        raise SystemExit(f"--latency-under-load: {len(shapes)} shapes match, want one")
    shape = shapes[0]
    index = sweep_shapes().index(shape)
    lat_n = 50
    work = Path(tempfile.mkdtemp(prefix="slawatch-latload-"))
    print(f"latency at {opts.latency_rate:,}/s for {opts.latency_seconds:.0f} s, alone and "
          f"under load of: {_shape_label(shape)}; work dir {work}", flush=True)
    rows: list[tuple[str, float, float, float, int, str]] = []
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        catalog, topic, msgs, wp, ends, rerouted = stage_point(
            broker, work, "load", shape, index, opts.worker_partitions)
        lat_catalog = work / "latency.yaml"
        lat_catalog.write_text(make_catalog(0, 0, 1, lat_n))
        for r in range(max(1, opts.rounds)):
            for loaded in (False, True):
                # A fresh latency worker and topic each time: on tansu a consumer's
                # latency grows over a long run with no worker at all (README), which
                # would make the later measurements slower than the first.
                lat_topic = f"latency-events-{r}-{int(loaded)}"
                broker.create_topics({lat_topic: opts.partitions})
                lw = Worker(broker, lat_catalog, work, opts.partitions,
                            f"bench-latency-{r}-{int(loaded)}", events_topic=lat_topic)
                try:
                    lw.wait_ready()
                    latency_run(broker, lw, lat_topic, opts.latency_rate, 3.0, lat_n)  # warm-up
                    stop = threading.Event()
                    rates: list[float] = []
                    errors: list[str] = []

                    def load(r: int = r, stop: threading.Event = stop,
                             rates: list[float] = rates, errors: list[str] = errors) -> None:
                        k = 0
                        while not stop.is_set():
                            w = Worker(broker, catalog, work, wp, f"load-{r}-{k}",
                                       events_topic=topic)
                            k += 1
                            try:
                                w.wait_ready()
                                st = wait_pipeline(w, topic, w.segments_topic, ends,
                                                   timeout=1800, reroute_ends=rerouted)
                                stats = st["stats"]
                                rates.append(pipeline_rate(len(msgs), stats))
                            except BaseException as exc:
                                errors.append(repr(exc))
                                return
                            finally:
                                w.stop()

                    th = None
                    if loaded:
                        th = threading.Thread(target=load, daemon=True)
                        th.start()
                        time.sleep(8.0)  # the load worker started and working off
                    lat, missing = latency_run(broker, lw, lat_topic, opts.latency_rate,
                                               opts.latency_seconds, lat_n)
                    if th is not None:
                        stop.set()
                        th.join(600)
                    note = (f"{len(rates)} load runs, {statistics.median(rates):,.0f} ev/s"
                            if rates else "no load run finished during it")
                    if errors:
                        note += f"; load failed: {errors[0][:200]}"
                    row = ("under load" if loaded else "alone", pct(lat, 0.5), pct(lat, 0.99),
                           max(lat, default=float("nan")), missing, note if loaded else "")
                    rows.append(row)
                    print(f"  round {r} {row[0]:<10}: p50 {row[1] * 1000:.0f} ms, p99 "
                          f"{row[2] * 1000:.0f} ms, max {row[3] * 1000:.0f} ms, {missing} not "
                          f"seen  {row[5]}", flush=True)
                finally:
                    lw.stop()
    for kind in ("alone", "under load"):
        p99s = [r[2] for r in rows if r[0] == kind]
        print(f"p99 {kind:<10}: median {statistics.median(p99s) * 1000:.0f} ms "
              f"({min(p99s) * 1000:.0f}-{max(p99s) * 1000:.0f}) over {len(p99s)} rounds "
              "(target < 250 ms under load)")
    return 0


def latency_ab(opts: argparse.Namespace) -> int:
    """(c) alone on two workers, this checkout's and ``--latency-ab TREE``'s, alternated
    ``--rounds`` times on one broker: the same measurement code for both, so a regression
    shows against a baseline measured in the same run on the same machine load."""
    lat_n = 50
    tree = opts.latency_ab.resolve()
    work = Path(tempfile.mkdtemp(prefix="slawatch-latab-"))
    print(f"latency at {opts.latency_rate:,}/s for {opts.latency_seconds:.0f} s: {ROOT} "
          f"(new) against {tree} (old); work dir {work}", flush=True)
    rows: dict[str, list[tuple[float, float, float]]] = {"new": [], "old": []}
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        lat_catalog = work / "latency.yaml"
        lat_catalog.write_text(make_catalog(0, 0, 1, lat_n))
        for r in range(max(1, opts.rounds)):
            order = ("new", "old") if r % 2 == 0 else ("old", "new")
            for kind in order:
                topic = f"latency-events-{kind}-{r}"
                broker.create_topics({topic: opts.partitions})
                w = Worker(broker, lat_catalog, work, opts.partitions, f"lat-{kind}-{r}",
                           events_topic=topic, tree=None if kind == "new" else tree)
                try:
                    w.wait_ready()
                    latency_run(broker, w, topic, opts.latency_rate, 3.0, lat_n)  # warm-up
                    lat, missing = latency_run(broker, w, topic, opts.latency_rate,
                                               opts.latency_seconds, lat_n)
                finally:
                    w.stop()
                row = (pct(lat, 0.5), pct(lat, 0.99), max(lat, default=float("nan")))
                rows[kind].append(row)
                print(f"  round {r} {kind}: p50 {row[0] * 1000:.0f} ms, p99 {row[1] * 1000:.0f} ms, "
                      f"max {row[2] * 1000:.0f} ms, {missing} not seen; load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    med = {k: statistics.median(x[1] for x in v) for k, v in rows.items()}
    for kind, v in rows.items():
        print(f"p99 {kind}: median {med[kind] * 1000:.0f} ms "
              f"({min(x[1] for x in v) * 1000:.0f}-{max(x[1] for x in v) * 1000:.0f}); "
              f"p50 median {statistics.median(x[0] for x in v) * 1000:.0f} ms")
    print(f"p99 new / old: {med['new'] / med['old']:.2f}")
    return 0


def scale_run(broker: EmbeddedBroker, work: Path, opts: argparse.Namespace) -> list[tuple[str, str]]:
    """RSS and scrape time with a production-sized catalog, every component reported."""
    nc, ns = opts.scale_components, opts.scale_services
    catalog = work / "scale.yaml"
    catalog.write_text(make_catalog(nc, ns, 1, 0))
    topic = "scale-events"
    broker.create_topics({topic: opts.partitions})
    msgs = make_events(nc * 2, nc, 0.2, time.time() - 7200, seed=2)
    for i in range(nc):  # every component once at least
        cid = f"c{i}"
        msgs.append((cid.encode(), orjson.dumps({"component": cid, "state": "up",
                                                 "ts": time.time() - 60})))
    publish(broker, topic, opts.partitions, msgs)
    ends = input_end_offsets(broker, topic, opts.partitions, msgs)
    tree = getattr(opts, "tree", None)
    w = Worker(broker, catalog, work, opts.partitions, "bench-scale", events_topic=topic,
               tree=tree)
    try:
        ready = w.wait_ready(300)
        wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800)
        done = time.monotonic() - w.started
        times, cpus = [], []
        size = 0
        for _ in range(3):
            # The worker's CPU during each scrape as well: on a shared machine the wall
            # time swings with the other jobs' load.
            c0, t0 = w.cpu(), time.perf_counter()
            size = len(w.get("/metrics", timeout=120))
            times.append(time.perf_counter() - t0)
            cpus.append(w.cpu() - c0)
        cur, peak = w.rss()
        # how many table writes a restart reads back (each writes every changed tracker)
        checkpoints = w.status()["stats"]["checkpoints"]
        out = [
            (f"(d) scale: {nc:,} components, {ns:,} services", f"{len(msgs):,} events in "
             f"{done:.1f} s (ready {ready:.1f} s), {checkpoints} checkpoints"),
            ("    /metrics scrapes after the events, 1st / 2nd / 3rd",
             " / ".join(f"{t * 1000:.0f}" for t in times)
             + f" ms, {size / 1e6:.1f} MB  (target < 1000 ms)"),
            ("    worker CPU during them", " / ".join(f"{c * 1000:.0f}" for c in cpus) + " ms"),
            ("    worker RSS now / peak", f"{cur:.0f} / {peak:.0f} MiB  (target < 500 MiB)"),
        ]
    finally:
        w.stop()
    logs = changelog_records(broker, "bench-scale")
    out.append(("    changelog records a restart reads", f"{sum(logs.values()):,}: " + ", ".join(
        f"{name} {n:,}" for name, n in logs.items())))
    # A restart: the state recovered from the changelogs, nothing decoded; the first
    # scrape comes PREPARE_WAIT s after ready, as Prometheus's would (every 15-60 s).
    w = Worker(broker, catalog, work, opts.partitions, "bench-scale", events_topic=topic,
               tree=tree)
    try:
        ready = w.wait_ready(300)
        time.sleep(PREPARE_WAIT)
        times, cpus = [], []
        for _ in range(3):
            c0, t0 = w.cpu(), time.perf_counter()
            w.get("/metrics", timeout=120)
            times.append(time.perf_counter() - t0)
            cpus.append(w.cpu() - c0)
        out.append((f"    after a restart (ready {ready:.1f} s), scrapes {PREPARE_WAIT:.0f} s "
                    "after ready, 1st / 2nd / 3rd",
                    " / ".join(f"{t * 1000:.0f}" for t in times) + " ms  (target < 1000 ms)"))
        out.append(("    worker CPU during them", " / ".join(f"{c * 1000:.0f}" for c in cpus) + " ms"))
    finally:
        w.stop()
    return out


#: Seconds after ready of the first scrape of a restarted worker in ``scale_run``.
PREPARE_WAIT = 15.0


if __name__ == "__main__":
    sys.exit(main())
