"""Real-process fixtures for the worker tests: broker, worker processes, scrapes, DLQ.

Nothing is mocked: a tansu broker on a free port (``EmbeddedBroker``), the worker as
``python -m agents.cli.main worker`` in a subprocess, events published with
kafka-python, ``/metrics`` read over HTTP and parsed with prometheus_client's parser.
The expected numbers come from the brute-force reference (``tests/reference.py``
through ``tests/exact_reference.py``) fed the same messages, rendered by the same
``families`` function the collector uses, so a comparison is series by series.

Every process started here is stopped by its PID in a ``finally``/fixture teardown.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agents.clients.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[1]

Series = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Series, float]

#: Worker-level series that describe the process, not the pipeline's numbers.
WORKER_SERIES = ("slawatch_worker_ready", "slawatch_catalog_", "slawatch_ingest_")

EXAMPLE_CATALOG = """\
components:
  mail-srv-01: {team: servers, kpi: 0.99}
  mail-srv-02: {team: servers, kpi: 0.99}
  core-sw-1:   {team: network, kpi: 0.9995}
  dns-1:       {team: network, kpi: 0.999}
  dns-2:       {team: network, kpi: 0.999}
  mx-1: {team: servers, kpi: 0.995}
  mx-2: {team: servers, kpi: 0.995}
  mx-3: {team: servers}
  spare-1: {team: servers}
services:
  dns:
    kind: internal
    customers: [it-operations]
    sla: {target: 0.9995, period: 30d}
    restore_time: 30m
    requires:
      - any: [dns-1, dns-2]
  email:
    kind: external
    customers: [all-staff, partners]
    sla: {target: 0.999, period: 30d}
    restore_time: 2h
    requires:
      - core-sw-1
      - any: [mail-srv-01, mail-srv-02]
      - service: dns
      - at_least: 2
        of: [mx-1, mx-2, mx-3]
"""
#: The components of ``EXAMPLE_CATALOG``, in its order.
EXAMPLE_COMPONENTS: list[str] = list(yaml.safe_load(EXAMPLE_CATALOG)["components"])



def wide_catalog(services: int = 12) -> str:
    """A catalog with enough services that every partition of 4 owns some."""
    lines = ["components:"]
    for i in range(services):
        lines.append(f"  app-{i}-a: {{team: t{i % 3}, kpi: 0.99}}")
        lines.append(f"  app-{i}-b: {{team: t{i % 3}, kpi: 0.99}}")
    lines.append("  shared-db: {team: db, kpi: 0.999}")
    lines.append("services:")
    for i in range(services):
        lines += [
            f"  svc-{i}:",
            f"    kind: {'external' if i % 2 else 'internal'}",
            f"    customers: [c{i}]",
            "    sla: {target: 0.99, period: 30d}",
            "    restore_time: 1h",
            "    requires:",
            "      - shared-db",
            f"      - any: [app-{i}-a, app-{i}-b]",
        ]
    return "\n".join(lines) + "\n"


# -- broker ---------------------------------------------------------------------------


#: The topics that are not the worker's own (those carry its app id, and it creates them).
TOPICS = ("component-events", "component-events-dlq")


def start_broker(tmp_path: Path, partitions: int) -> EmbeddedBroker:
    """A fresh broker with the worker's topics created at ``partitions``."""
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    try:
        broker.create_topics(dict.fromkeys(TOPICS, partitions))
    except BaseException:
        broker.stop()
        raise
    return broker


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A tansu broker (4 partitions per topic) for one test."""
    broker = start_broker(tmp_path, 4)
    try:
        yield broker
    finally:
        broker.stop()


class ExampleEstate:
    """``EXAMPLE_CATALOG`` written to ``catalog`` on a fresh ``broker`` (4 partitions per
    topic): the estate most worker tests run, with its event streams and what the
    reference says of them."""

    def __init__(self, broker: EmbeddedBroker, catalog: Path) -> None:
        self.broker = broker
        self.catalog = catalog
        self.catalog.write_text(EXAMPLE_CATALOG)

    def messages(self, n: int, *, seed: int, span: float = 7200.0) -> list[Message]:
        """A messy stream (``scenario``) of ``n`` messages ending now, events in order
        per component (jitter 0)."""
        return scenario(EXAMPLE_COMPONENTS, n, seed=seed, now=time.time(), span=span,
                        jitter=0.0)

    def reference(self, messages: Iterable[Message]) -> tuple[Any, list[str]]:
        """``reference_engine`` of the example catalog."""
        return reference_engine(EXAMPLE_CATALOG, messages)


@pytest.fixture
def example_estate(kafka_broker: EmbeddedBroker, tmp_path: Path) -> ExampleEstate:
    """The example estate on this test's broker (stopped after the test, after its
    workers)."""
    return ExampleEstate(kafka_broker, tmp_path / "services.yaml")


# -- publishing -----------------------------------------------------------------------


def event_bytes(component: str, state: str, ts: float, **extra: Any) -> bytes:
    return orjson.dumps({"component": component, "state": state, "ts": ts, **extra})


def read_topic(broker: EmbeddedBroker, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """Read ``topic`` from the beginning until ``expected`` records or the timeout."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000, group_id=None)
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for rec in consumer:
                records.append(rec)
                if len(records) >= expected:
                    break
    finally:
        consumer.close()
    return records


# -- worker processes -----------------------------------------------------------------


class WorkerProcess:
    """One `slawatch worker` subprocess with its own web port and data dir."""

    def __init__(self, broker: EmbeddedBroker, catalog: Path, workdir: Path, *, name: str = "w",
                 app_id: str = "slawatch-test", partitions: int = 4,
                 extra: Iterable[str] = (), env: dict[str, str] | None = None,
                 crash_at: str | None = None) -> None:
        self.broker = broker
        self.env = dict(env or {})  # on top of this process's, without its SLAWATCH_*
        #: ``POINT[:N]``: the next start SIGKILLs itself at the N-th pass of that crash
        #: point (tests/support/crashing_worker.py); None: an ordinary worker.
        self.crash_at = crash_at
        self.catalog = catalog
        self.name = name
        self.app_id = app_id
        self.partitions = partitions
        self.workdir = workdir
        self.extra = list(extra)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"worker-{name}.log"
        self.starts = 0
        self.started_at = 0.0
        # Set by tests of a worker behind --web-config-file (TLS, basic auth).
        self.scheme = "http"
        self.auth_headers: dict[str, str] = {}
        self.ssl_context: Any = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> WorkerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        command = (["-m", "agents.cli.main"] if self.crash_at is None
                   else ["-m", "tests.support.crashing_worker", self.crash_at])
        cmd = [
            sys.executable, *command, "worker", "--broker-kind", "tansu",
            "--broker", self.broker.url,
            "--catalog", str(self.catalog),
            "--web-port", str(self.port),
            "--web-host", "127.0.0.1",
            "--data-dir", str(self.workdir / f"data-{self.name}"),
            "--app-id", self.app_id,
            "--partitions", str(self.partitions),
            "--store", "memory",
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLAWATCH_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
        log.flush()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, headers=self.auth_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Seconds from start until /readyz says 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _ = self.get("/readyz", timeout=1.0)
                if status == 200:
                    return time.monotonic() - self.started_at
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready in {timeout} s:\n{self.log_tail()}")

    def scrape(self) -> Samples:
        status, body = self.get("/metrics")
        assert status == 200, body[:500]
        return parse_metrics(body.decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send ``sig`` to the worker's PID and reap it (SIGKILL after ``timeout``)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log, each message once: a line that repeats a
        later one but for its time and numbers is left out (Faust's recovery warns every
        5 s for every partition, which filled a failed test's tail and hid the lines
        before the worker stalled)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept: list[str] = []
        seen: set[str] = set()
        left_out = 0
        for line in reversed(text.splitlines()):
            key = _DIGITS.sub("#", line)
            if key in seen:
                left_out += 1
                continue
            seen.add(key)
            kept.append(line)
            if len(kept) >= lines:
                break
        note = [f"({left_out} lines that repeat a later one left out)"] if left_out else []
        return "\n".join(note + kept[::-1])

    def task_stacks(self, lines: int = 60) -> str:
        """The worker's asyncio tasks where they wait, as far as they are in slawatch or
        Faust code: SIGUSR1 makes mode's worker write every task's stack to the log."""
        if not self.alive():
            return ""
        start = self.log_path.stat().st_size
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGUSR1)
        time.sleep(1.5)
        with open(self.log_path, "rb") as f:
            f.seek(start)
            dump = f.read().decode(errors="replace").splitlines()
        out: list[str] = []
        head: list[str] = []  # the current task's header, until a frame of it is kept
        for line in dump:
            if line.startswith("  TASK "):
                head = [line]
            elif line.startswith("   -> ") and head:
                head.append(line)
            elif line.startswith("  File ") and ("/agents/" in line or "/faust/" in line):
                out += [*head, line]
                head = []
        return "\n".join(out[:lines])


#: Runs of digits (times, offsets, partitions) in a log line.
_DIGITS = re.compile(r"\d+")


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Any]:
    """``make(broker, catalog_path, **kw) -> WorkerProcess`` (started); all stopped after."""
    made: list[WorkerProcess] = []

    def make(broker: EmbeddedBroker, catalog: Path, **kw: Any) -> WorkerProcess:
        w = WorkerProcess(broker, catalog, tmp_path, **kw)
        made.append(w)
        return w.start()

    try:
        yield make
    finally:
        for w in made:
            w.stop(signal.SIGKILL if w.alive() else signal.SIGTERM, timeout=10)


# -- metrics ----------------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = float(s.value)
    return out


def reference_samples(engine: Any, now: float) -> Samples:
    """The engine's report at ``now``, rendered exactly as the collector renders it."""
    from prometheus_client import CollectorRegistry, generate_latest

    from tests.support.metrics import families

    report = engine.report(now)

    class _C:
        def collect(self) -> Iterator[Any]:
            yield from families(report)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_C())  # type: ignore[arg-type]
    return parse_metrics(generate_latest(registry).decode())


def pipeline_series(samples: Samples) -> Samples:
    return {k: v for k, v in samples.items() if not k[0].startswith(WORKER_SERIES)}


def compare(got: Samples, ref0: Samples, ref1: Samples, *, exact_events: bool = True) -> list[str]:
    """Differences between scraped samples and the reference bracket [ref0, ref1].

    The worker computed its numbers at some instant between the two reference times, so
    a time-dependent value must lie between the two reference values.
    """
    problems: list[str] = []
    got = pipeline_series(got)
    missing = set(ref0) - set(got)
    extra = set(got) - set(ref0)
    for k in sorted(missing, key=str)[:10]:
        problems.append(f"missing {k}")
    for k in sorted(extra, key=str)[:10]:
        problems.append(f"unexpected {k}")
    for k, v in got.items():
        if k not in ref0:
            continue
        a, b = ref0[k], ref1.get(k, ref0[k])
        lo, hi = min(a, b), max(a, b)
        if math.isinf(lo) or math.isinf(hi):
            ok = v in (a, b) or lo <= v <= hi
        else:
            eps = 1e-9 * max(1.0, abs(lo), abs(hi))
            ok = lo - eps <= v <= hi + eps
        if not ok:
            problems.append(f"{k[0]}{dict(k[1])}: got {v}, expected {a} .. {b}")
    return problems


#: Series whose values are summed over workers (per-partition counters); every other
#: series must come from one worker only.
SUMMED = ("slawatch_events", "slawatch_unmapped")


def union_scrape(workers: Sequence[WorkerProcess], timeout: float = 2.0, *,
                 all_answer: bool = False) -> tuple[Samples, list[Series]]:
    """Union of the pipeline series of ``workers`` and the series exported twice.

    A worker that does not answer (starting, killed) contributes nothing, unless
    ``all_answer``: then its failed scrape raises (OSError or AssertionError).
    """
    union: Samples = {}
    dups: list[Series] = []
    for w in workers:
        if not all_answer and not w.alive():
            continue
        try:
            status, body = w.get("/metrics", timeout=timeout)
        except OSError:
            if all_answer:
                raise
            continue
        if status != 200:
            assert not all_answer, f"worker {w.name}: /metrics {status}: {body[:500]!r}"
            continue
        for k, v in pipeline_series(parse_metrics(body.decode())).items():
            if k[0].startswith(SUMMED):
                union[k] = union.get(k, 0.0) + v
            elif k in union:
                dups.append(k)
            else:
                union[k] = v
    return union, dups


def wait_matches(workers: Sequence[WorkerProcess], engine: Any, timeout: float = 30.0, *,
                 all_answer: bool = True) -> Samples:
    """Poll the workers' /metrics until their union equals the engine's reference, each
    series from one worker. ``all_answer=False``: a worker that does not answer
    (starting, killed) contributes nothing, as long as one does."""
    deadline = time.monotonic() + timeout
    problems: list[str] = ["never scraped"]
    while time.monotonic() < deadline:
        t0 = time.time()
        try:
            union, dups = union_scrape(workers, timeout=5.0, all_answer=all_answer)
        except (OSError, AssertionError) as exc:
            problems = [f"scrape failed: {exc}"]
            time.sleep(0.5)
            continue
        t1 = time.time()
        problems = [f"series exported by two workers: {k}" for k in dups[:5]]
        if not union:
            problems.append("no worker answered")
        else:
            problems += compare(union, reference_samples(engine, t0), reference_samples(engine, t1))
        if not problems:
            return union
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}\n{w.log_tail(30)}\n--- {w.name}: tasks\n{w.task_stacks()}"
                     for w in workers)
    raise AssertionError("metrics never matched the engine:\n  " + "\n  ".join(problems[:30])
                         + "\n" + logs)



def counted(samples: Samples) -> float:
    """Messages that got an outcome (sum of slawatch_events_total)."""
    return sum(v for k, v in samples.items() if k[0] == "slawatch_events_total")


# -- scenarios --------------------------------------------------------------------------


Message = tuple[bytes | None, bytes, int | None]  # key, value, explicit partition or None


def scenario(components: list[str], n: int, *, seed: int, now: float, span: float = 7200.0,
             unmapped: Iterable[str] = ("ghost-1", "ghost-2", "ghost-3"),
             jitter: float = 200.0) -> list[Message]:
    """A realistic, messy stream ending a minute ago: out of order within the allowed
    lateness (``jitter`` seconds), re-sent duplicates, late events, invalid messages,
    unmapped components."""
    import random

    rnd = random.Random(seed)
    ghosts = list(unmapped)
    out: list[Message] = []
    sent: list[Message] = []
    start = now - span
    step = (span - 60.0) / max(1, n)
    for i in range(n):
        base = start + i * step
        roll = rnd.random()
        if roll < 0.04 and sent:
            out.append(rnd.choice(sent[-50:]))  # redelivered / re-sent: duplicate
            continue
        if roll < 0.07:
            bad = rnd.choice([
                b"not json",
                b"[1, 2]",
                b'{"component": "dns-1", "state": "up"}',
                b'{"component": "dns-1", "state": "sideways", "ts": 1}',
                orjson.dumps({"component": "dns-1", "state": "down", "ts": now + 3600}),
                b'{"component": "bad id!", "state": "up", "ts": 1}',
            ])
            out.append((b"bad", bad, None))
            continue
        if roll < 0.10 and ghosts:
            g = rnd.choice(ghosts)
            out.append((g.encode(), event_bytes(g, "down", base), None))
            continue
        comp = rnd.choice(components)
        # Beyond the 10 min allowed lateness (late), or out of order within it.
        ts = base - 1500.0 if roll < 0.13 else base + rnd.uniform(-jitter, jitter)
        state = rnd.choices(["up", "down", "maintenance"], weights=[6, 3, 1])[0]
        msg: Message = (comp.encode(), event_bytes(comp, state, round(min(ts, now - 1.0), 3)), None)
        out.append(msg)
        sent.append(msg)
    return out


def publish_messages(broker: EmbeddedBroker, messages: Iterable[Message],
                     topic: str = "component-events") -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5,
                             batch_size=256 * 1024)
    n = 0
    try:
        for key, value, partition in messages:
            producer.send(topic, key=key, value=value, partition=partition)
            n += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return n


def reference_engine(catalog_text: str, messages: Iterable[Message]) -> tuple[Any, list[str]]:
    """What the worker must show for ``messages`` (in publish order, per component the
    order of arrival), from the brute-force reference (``tests/exact_reference.py``),
    not the production engine: the same parser and trackers on both sides would let a
    shared bug cancel out. Returns it and the reason kind (``invalid`` or ``late``) of
    every message the DLQ must hold."""
    from tests.exact_reference import Expected

    expected = Expected(catalog_text, [v for _, v, _ in messages])
    return expected, [kind for (_, kind), n in expected.dlq.items() for _ in range(n)]


def engine_reference(catalog_text: str, messages: Iterable[Message]) -> tuple[Any, list[str]]:
    """The production engine fed the same messages in publish order, and the DLQ
    reasons it gives: for tests of the reason texts, which the brute-force reference
    does not reproduce."""
    import yaml

    from streams.catalog import parse_catalog
    from streams.engine import Engine

    engine = Engine(parse_catalog(yaml.safe_load(catalog_text), "test"), allowed_lateness=600.0)
    reasons: list[str] = []
    now = time.time()
    for _, value, _ in messages:
        _outcome, reason = engine.apply_raw(value, now)
        if reason is not None:
            reasons.append(reason)
    return engine, reasons


def wait_counted(worker: WorkerProcess, n: float, timeout: float = 30.0) -> float:
    """Wait until the worker counted ``n`` messages; returns seconds since its start."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, AssertionError):
            last = counted(worker.scrape())
            if last >= n:
                return time.monotonic() - worker.started_at
        time.sleep(0.1)
    raise AssertionError(f"worker counted {last} of {n} messages:\n{worker.log_tail()}")
