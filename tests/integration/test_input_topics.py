"""The input topic belongs to the monitoring side (CONTRACT §1): any partition count,
created by anyone before or after the worker, filled by any client, growing while
workers run. None of that may change a number.

Each cell runs a real tansu broker and real worker processes, publishes a messy
scenario (out of order, duplicates, late, invalid, unmapped), and compares with the
brute-force reference (``tests/exact_reference.py``, not the production engine): every
outcome count, the DLQ read to its end as a multiset of (message, reason), and every
series of the union of the workers' ``/metrics``.

The cells are generated: every input partition count with every creator, the start
order, the number of workers and the publishing client cycling through their values
so that each value meets each other one somewhere. A few cells run by default; the
rest are marked ``slow``.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.clients.broker import EmbeddedBroker
from tests.exact_reference import Expected, dlq_multiset, read_to_end
from tests.fixtures_kafka import (
    Message,
    WorkerProcess,
    compare,
    counted,
    publish_messages,
    scenario,
    union_scrape,
    wide_catalog,
)

pytestmark = [pytest.mark.integration]

TOPIC = "component-events"
DLQ = "component-events-dlq"
SERVICES = 6
COMPONENTS = [f"app-{i}-{x}" for i in range(SERVICES) for x in "ab"] + ["shared-db"]


@dataclass(frozen=True)
class Cell:
    creator: str  # producer (auto-create before the worker) | ops | worker
    input_partitions: int  # ignored for "worker" (it creates the topic with its own)
    worker_partitions: int
    publish: str  # before | during | after_ready
    workers: int
    client: str  # kafka-python | confluent (librdkafka's default partitioner)

    @property
    def id(self) -> str:
        n = self.worker_partitions if self.creator == "worker" else self.input_partitions
        return (f"{self.creator}-in{n}-p{self.worker_partitions}-{self.publish}-"
                f"w{self.workers}-{self.client}")


#: tansu creates a topic on first produce with this many partitions.
AUTO_CREATED = 4


def cells() -> list[Cell]:
    """Every input partition count x creator, the other axes cycled through."""
    out: list[Cell] = []
    timings = itertools.cycle(["before", "during", "after_ready"])
    workers = itertools.cycle([1, 2, 2, 1, 1])
    clients = itertools.cycle(["confluent", "kafka-python"])
    for n in (1, 3, 4, 8, 12):
        out.append(Cell("ops", n, 4, next(timings), next(workers), next(clients)))
    for p, publish in ((2, "before"), (4, "during"), (8, "before"), (8, "during")):
        out.append(Cell("producer", AUTO_CREATED, p, publish, next(workers), next(clients)))
    for p, publish in ((3, "after_ready"), (4, "during")):
        out.append(Cell("worker", p, p, publish, next(workers), next(clients)))
    return out


#: The cells of the default run: fewer, more and as many input partitions as the
#: worker's, both clients, both worker counts, every start order.
DEFAULT = {
    "ops-in8-p4-before-w1-kafka-python",
    "producer-in4-p8-during-w1-confluent",
    "ops-in3-p4-during-w2-kafka-python",
}


def _params() -> list[Any]:
    return [pytest.param(c, id=c.id, marks=() if c.id in DEFAULT else pytest.mark.slow)
            for c in cells()]


def publish(broker: EmbeddedBroker, client: str, messages: list[Message]) -> None:
    """Keyed by component, with the client's own default partitioner."""
    if client == "confluent":
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                             "enable.idempotence": False})
        for key, value, _ in messages:
            while True:
                try:
                    producer.produce(TOPIC, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        assert producer.flush(30) == 0
    else:
        from kafka import KafkaProducer

        kp = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
        try:
            for key, value, _ in messages:
                kp.send(TOPIC, key=key, value=value)
            kp.flush(timeout=30)
        finally:
            kp.close(timeout=10)


def partitions_of(broker: EmbeddedBroker, topic: str) -> int:
    from kafka import KafkaConsumer

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        return len(c.partitions_for_topic(topic) or ())
    finally:
        c.close()


def wait_exact(workers: list[WorkerProcess], expected: Expected, timeout: float) -> dict[Any, float]:
    """Poll the union of the workers' /metrics until it equals the reference."""
    deadline = time.monotonic() + timeout
    problems = ["never scraped"]
    while time.monotonic() < deadline:
        t0 = time.time()
        union, dups = union_scrape(workers)
        t1 = time.time()
        if union:
            problems = [f"exported twice: {k}" for k in dups[:5]]
            ref0 = expected.samples(t0)
            problems += compare(union, ref0, expected.samples(t1))
            if not problems:
                return union
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name}\n{w.log_tail(25)}" for w in workers)
    raise AssertionError("never equal to the reference:\n  " + "\n  ".join(problems[:25])
                         + "\n" + logs)


def check_exact(broker: EmbeddedBroker, workers: list[WorkerProcess], expected: Expected,
                timeout: float = 60.0, dlq_topic: str = DLQ) -> None:
    union = wait_exact(workers, expected, timeout)
    assert counted(union) == expected.total
    got = {dict(k[1])["outcome"]: v for k, v in union.items() if k[0] == "slawatch_events_total"}
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in expected.counts.items() if v}
    dlq = dlq_multiset(read_to_end(broker.bootstrap, dlq_topic))
    assert dlq == expected.dlq, _dlq_diff(dlq, expected.dlq)


def _dlq_diff(got: Counter[Any], want: Counter[Any]) -> str:
    return f"extra {list((got - want).items())[:5]}, missing {list((want - got).items())[:5]}"


@pytest.mark.parametrize("cell", _params())
def test_any_input_topic(cell: Cell, tmp_path: Path) -> None:
    text = wide_catalog(SERVICES)
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    messages = scenario(COMPONENTS, 240, seed=zlib.crc32(cell.id.encode()), now=time.time())
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    workers = [WorkerProcess(broker, catalog, tmp_path, name=f"w{i}",
                             partitions=cell.worker_partitions) for i in range(cell.workers)]
    try:
        if cell.creator == "ops":
            broker.create_topics({TOPIC: cell.input_partitions})
        half = len(messages) // 2
        if cell.publish == "before":
            publish(broker, cell.client, messages)
        for w in workers:
            w.start()
        if cell.publish == "during":
            publish(broker, cell.client, messages[:half])
        for w in workers:
            w.wait_ready(timeout=60)
        if cell.publish == "during":
            publish(broker, cell.client, messages[half:])
        elif cell.publish == "after_ready":
            publish(broker, cell.client, messages)
        want = {"producer": AUTO_CREATED, "ops": cell.input_partitions,
                "worker": cell.worker_partitions}[cell.creator]
        if cell.creator != "worker" or cell.publish == "after_ready":
            assert partitions_of(broker, TOPIC) == want
        check_exact(broker, workers, Expected(text, [v for _, v, _ in messages]))
    finally:
        for w in workers:
            w.stop(timeout=10)
        broker.stop()


@pytest.mark.parametrize("topic", ["{app}-component-events-rerouted", "{app}-service-segments",
                                   "{app}-components-changelog"])
def test_internal_topic_of_another_count_is_refused(topic: str, tmp_path: Path) -> None:
    """The worker's own topics must have --partitions partitions: one that exists with
    another count stops the worker at start with one line that names the topic, its
    count, the expected count and what to do, and the configuration error status."""
    from agents.cli.worker import EXIT_CONFIG

    catalog = tmp_path / "services.yaml"
    catalog.write_text(wide_catalog(SERVICES))
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    worker = WorkerProcess(broker, catalog, tmp_path, partitions=4)
    name = topic.format(app=worker.app_id)
    count = 2 + zlib.crc32(name.encode()) % 5 * 2  # never 4
    try:
        broker.create_topics({TOPIC: 3, name: count})
        worker.start()
        assert worker.proc is not None
        code = worker.proc.wait(timeout=60)
        log = worker.log_path.read_text()
        assert code == EXIT_CONFIG, worker.log_tail()
        assert "Traceback" not in log, worker.log_tail()
        lines = [line for line in log.splitlines() if f"{name} has {count}" in line]
        assert lines, worker.log_tail()
        assert all("--partitions 4" in line and f"--partitions {count}" in line
                   and "--app-id" in line for line in lines), lines
        assert any(line.startswith("slawatch worker: ") for line in lines), lines
    finally:
        worker.stop(timeout=10)
        broker.stop()


def test_two_app_ids_share_a_broker(tmp_path: Path) -> None:
    """Two apps (app ids) on one broker, with the same service names, each reading its
    own input: each app's numbers are those of its own input alone, because every topic
    of a worker's own (segments included) carries its app id."""
    catalog = tmp_path / "services.yaml"
    text = wide_catalog(SERVICES)
    catalog.write_text(text)
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    apps = {app: scenario(COMPONENTS, 300, seed=zlib.crc32(app.encode()), now=time.time())
            for app in ("team-a", "team-b")}
    workers = {app: WorkerProcess(broker, catalog, tmp_path, name=app, app_id=app,
                                  partitions=4, extra=["--events-topic", f"{app}-events",
                                                       "--dlq-topic", f"{app}-dlq"])
               for app in apps}
    try:
        broker.create_topics({f"{app}-events": 4 for app in apps})
        for w in workers.values():
            w.start()
        for app, messages in apps.items():
            publish_messages(broker, messages, topic=f"{app}-events")
        for app, messages in apps.items():
            check_exact(broker, [workers[app]], Expected(text, [v for _, v, _ in messages]),
                        timeout=90, dlq_topic=f"{app}-dlq")
    finally:
        for w in workers.values():
            w.stop(timeout=10)
        broker.stop()
