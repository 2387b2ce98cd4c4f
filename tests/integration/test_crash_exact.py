"""Every message gets exactly one outcome, and the DLQ holds each rejected message
once, whatever point a crash hits (CONTRACT §1).

The worker SIGKILLs itself at a named crash point (``agents/worker/faults.py``, armed by
``tests/support/crashing_worker.py``): in the middle of a fetch, after a checkpoint found
its DLQ records delivered but before it wrote the counters, between the counters and the
trackers of a checkpoint, and right after a (re)assignment was recovered. Cells are
generated over the points, both table stores, an input topic co-partitioned with the
worker or not, read where it is (one worker owns every table partition) or forwarded
(forced with ``+forward``, as a group of workers forwards), and one cell where a second worker
crashes during the rebalances of joining and leaving. The messages go out in parts, one
per worker start (in one RocksDB cell the worker is killed twice on the same data dir);
the result is compared with the brute-force reference: the sum and each count of
``slawatch_events_total``, the DLQ read to its end as a multiset of (message, reason),
and every series.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from agents.clients.broker import EmbeddedBroker
from tests.exact_reference import Expected
from tests.fixtures_kafka import WorkerProcess, counted, scenario, wait_counted, wide_catalog
from tests.integration.test_input_topics import COMPONENTS, SERVICES, TOPIC, check_exact, publish

pytestmark = [pytest.mark.integration]

POINTS = ("fetch", "sent", "checkpoint", "recovery")
STORES = ("memory", "rocksdb")


@dataclass(frozen=True)
class Cell:
    point: str
    store: str
    input_partitions: int  # the worker has 4
    forward: bool = False  # every record of the input forwarded through the re-route topic

    @property
    def id(self) -> str:
        return (f"{self.point}-{self.store}-in{self.input_partitions}"
                + ("-forward" if self.forward else ""))


def cells() -> list[Cell]:
    """Every point with one store and one kind of input topic; the DLQ's point with
    both stores; the points of a batch (fetch, sent) with another count's input both
    read where it is and forwarded."""
    out = []
    for i, point in enumerate(POINTS):
        out.append(Cell(point, STORES[(i + 1) % 2], 3 if i < 2 else 4, forward=i == 0))
    out.append(Cell("sent", "rocksdb", 4))
    out.append(Cell("fetch", "memory", 3))
    out.append(Cell("sent", "memory", 3, forward=True))
    return out


#: The cell killed twice on one data dir.
REPEATED = "sent-rocksdb-in4"


DEFAULT = {"sent-memory-in3"}


def _params() -> list[object]:
    return [pytest.param(c, id=c.id, marks=() if c.id in DEFAULT else pytest.mark.slow)
            for c in cells()]


def _wait_dead_or_counted(worker: WorkerProcess, n: int, timeout: float) -> bool:
    """True if the worker died (by its crash point) before it counted ``n``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            return True
        try:
            if counted(worker.scrape()) >= n:
                break
        except (OSError, AssertionError):
            pass
        time.sleep(0.2)
    # Counted is not yet checkpointed: give the checkpoint (and its crash point) time.
    time.sleep(1.5)
    return not worker.alive()


@pytest.mark.parametrize("cell", _params())
def test_crash_at_point(cell: Cell, tmp_path: Path) -> None:
    text = wide_catalog(SERVICES)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    seed = zlib.crc32(cell.id.encode())
    messages = scenario(COMPONENTS, 300, seed=seed, now=time.time())
    # The first or second pass of the point; in one cell a second crash on the same
    # RocksDB data dir (repeated kills).
    n = 1 if cell.point == "recovery" else 1 + seed % 2  # one recovery per start
    mode = "+forward" if cell.forward else ""
    if cell.id == REPEATED:
        parts = [messages[:100], messages[100:200], messages[200:]]
        specs = [f"{cell.point}:{n}", f"{cell.point}:1", None]
    else:
        parts = [messages[:150], messages[150:]]
        # A forwarding worker's successor reads where it is: it must first read what
        # its predecessor forwarded (routing.py's switch, after a crash).
        specs = [f"{cell.point}:{n}{mode}", None]
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    worker = WorkerProcess(broker, catalog, tmp_path, partitions=4,
                           extra=["--store", cell.store])
    crashed = 0
    try:
        broker.create_topics({TOPIC: cell.input_partitions})
        sent = 0
        for spec, part in zip(specs, parts, strict=True):
            if worker.alive():
                worker.stop()
            worker.crash_at = spec
            worker.start()
            # In pieces, each counted (and given time for a checkpoint) before the
            # next, so that a part passes each point several times however few
            # fetches and hops its records take.
            for lo in range(0, len(part), 30):
                publish(broker, "confluent", part[lo:lo + 30])
                sent += len(part[lo:lo + 30])
                if _wait_dead_or_counted(worker, sent, timeout=45):
                    assert worker.proc is not None and worker.proc.returncode == -9, \
                        worker.log_tail()
                    crashed += 1
                    rest = part[lo + 30:]  # goes out too, for the next start to read
                    if rest:
                        publish(broker, "confluent", rest)
                        sent += len(rest)
                    break
        assert worker.alive(), worker.log_tail()
        assert crashed >= 1, "the crash point was never reached"
        check_exact(broker, [worker], Expected(text, [v for _, v, _ in messages]), timeout=90)
    finally:
        worker.stop(timeout=10)
        broker.stop()


@pytest.mark.slow
def test_crash_during_rebalances(tmp_path: Path) -> None:
    """A second worker joins, crashes in its first batches (a rebalance hands its
    partitions back), and joins again; events flow all along."""
    text = wide_catalog(SERVICES)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    messages = scenario(COMPONENTS, 300, seed=18, now=time.time())
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    a = WorkerProcess(broker, catalog, tmp_path, name="a", partitions=4)
    b = WorkerProcess(broker, catalog, tmp_path, name="b", partitions=4,
                      crash_at="fetch:2")
    try:
        broker.create_topics({TOPIC: 3})
        a.start().wait_ready(timeout=60)
        publish(broker, "kafka-python", messages[:100])
        b.start()
        time.sleep(3.0)  # b is joining: a rebalance is under way
        # Publish in slices while b lives, so that b fetches records however long its
        # join takes on a loaded machine (it kills itself at its second fetch).
        deadline = time.monotonic() + 60
        for lo in range(100, 200, 5):
            publish(broker, "kafka-python", messages[lo:lo + 5])
            if b.alive():
                time.sleep(0.5)
        while b.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not b.alive() and b.proc is not None and b.proc.returncode == -9, b.log_tail()
        publish(broker, "kafka-python", messages[200:250])
        b.crash_at = None
        b.start()
        publish(broker, "kafka-python", messages[250:])
        b.wait_ready(timeout=60)
        check_exact(broker, [a, b], Expected(text, [v for _, v, _ in messages]), timeout=120)
    finally:
        for w in (a, b):
            w.stop(timeout=10)
        broker.stop()


def _rejections(n: int, seed: int) -> list[tuple[bytes, bytes, None]]:
    """A stream in which about a third of the messages are rejected (late or invalid)."""
    out = scenario(COMPONENTS, n, seed=seed, now=time.time())
    rnd = random.Random(seed)
    late = [m for m in out if rnd.random() < 0.25]
    # Re-sent an hour late: each a `late` rejection (after its component's newer events).
    older = []
    for key, value, _ in late:
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("ts"), float | int):
            obj["ts"] = float(obj["ts"]) - 3600.0 - rnd.random()
            older.append((key, orjson.dumps(obj), None))
    mixed = out + older
    rnd.shuffle(mixed)
    return mixed


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_successor_classifies_nothing_before_it_read_the_dlq(client: str, tmp_path: Path) -> None:
    """A worker crashes after its rejections reached the DLQ and before the checkpoint
    that counts them; its successor reads them back at assignment (which takes at
    least half a second) while the input it must classify again, and new input, is
    already being fetched. Nothing may be classified before that read is done: each
    rejection is in the DLQ once, each message counted once."""
    text = wide_catalog(SERVICES)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    seed = zlib.crc32(client.encode())
    messages = _rejections(1500, seed)
    parts = [messages[:500], messages[500:1000], messages[1000:]]
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    worker = WorkerProcess(broker, catalog, tmp_path, partitions=4)
    try:
        broker.create_topics({TOPIC: 4})
        # A first run leaves state to recover (the successor fetches while it does).
        publish(broker, client, parts[0])
        worker.start()
        wait_counted(worker, len(parts[0]), timeout=60)
        assert worker.stop() == 0, worker.log_tail()
        # The next finds its first batches' rejections delivered, and is killed before
        # it writes the counters.
        publish(broker, client, parts[1])
        worker.crash_at = "sent:1"
        worker.start()
        assert _wait_dead_or_counted(worker, 10**9, timeout=60), worker.log_tail()
        assert worker.proc is not None and worker.proc.returncode == -9, worker.log_tail()
        worker.crash_at = None
        worker.start()
        # New input all through the successor's start-up and its read of the DLQ.
        for lo in range(0, len(parts[2]), 25):
            publish(broker, client, parts[2][lo:lo + 25])
            time.sleep(0.2)
        worker.wait_ready(timeout=60)
        log = worker.log_path.read_text(errors="replace")
        found = [int(m) for m in re.findall(r"(\d+) DLQ records of a predecessor", log)]
        assert found and found[-1] > 0, "the successor found no rejection of its predecessor"
        check_exact(broker, [worker], Expected(text, [v for _, v, _ in messages]), timeout=90)
    finally:
        worker.stop(timeout=10)
        broker.stop()
