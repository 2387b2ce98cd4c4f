"""Helpers for the reliability tests (tests/test_reliability_*.py).

Everything here drives real processes: a background publisher thread with a fixed
rate, a scraper that records which services the union of the workers' /metrics
covers over time, RSS and listening-socket probes read from /proc, a DLQ reader and a
fast confluent-kafka producer (murmur2 partitioner, the Java/kafka-python default, so
events land on the partition the worker expects and are not re-routed).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.clients.broker import EmbeddedBroker
from tests.fixtures_kafka import (
    Message,
    Samples,
    Series,
    WorkerProcess,
    wait_matches,
)


def wait_for(pred: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``pred`` until true; returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, AssertionError):
            if pred():
                return time.monotonic() - t0
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def series_keys(samples: Samples) -> set[Series]:
    return set(samples)


def service_names(samples: Samples) -> set[str]:
    return {dict(k[1])["service"] for k in samples if k[0] == "slawatch_service_up"}


# -- publishing ---------------------------------------------------------------------------


def confluent_producer(broker: EmbeddedBroker, **conf: Any) -> Any:
    from confluent_kafka import Producer

    base: dict[str, Any] = {
        "bootstrap.servers": broker.bootstrap,
        # The Java client's partitioner (kafka-python and the worker use it too).
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 2_000_000,
        "enable.idempotence": False,
        "acks": 1,
    }
    base.update(conf)
    return Producer(base)


def produce_all(producer: Any, topic: str, messages: Iterable[Message]) -> int:
    """Produce with confluent-kafka, retrying on a full local queue; flushes at the end."""
    n = 0
    for key, value, partition in messages:
        kw: dict[str, Any] = {"key": key, "value": value}
        if partition is not None:
            kw["partition"] = partition
        while True:
            try:
                producer.produce(topic, **kw)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} messages not delivered"
    return n


@dataclass
class RatePublisher:
    """Publish ``messages`` in a background thread at ``rate`` messages/s (kafka-python).

    ``published`` is how many were handed to the producer and flushed so far.
    """

    broker: EmbeddedBroker
    messages: list[Message]
    rate: float
    topic: str = "component-events"
    chunk: int = 100
    published: int = 0
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> RatePublisher:
        self._thread = threading.Thread(target=self._run, name="rate-publisher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5,
                                     batch_size=256 * 1024, retries=10)
            try:
                t0 = time.monotonic()
                for i in range(0, len(self.messages), self.chunk):
                    for key, value, partition in self.messages[i:i + self.chunk]:
                        producer.send(self.topic, key=key, value=value, partition=partition)
                    producer.flush(timeout=60)
                    self.published = min(len(self.messages), i + self.chunk)
                    ahead = t0 + self.published / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            finally:
                producer.close(timeout=10)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def join(self, timeout: float = 120.0) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "publisher did not finish"
        if self.error is not None:
            raise AssertionError(f"publisher failed: {self.error!r}") from self.error


# -- reading --------------------------------------------------------------------------------


def read_all(broker: EmbeddedBroker, topic: str, *, idle: float = 3.0,
             timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` (confluent-kafka), until ``idle`` s without a new one."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"reliability-reader-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.message.max.bytes": 16 * 1024 * 1024,
        "receive.message.max.bytes": 64 * 1024 * 1024,
    })
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
    # OFFSET_BEGINNING = -2; assigned, not subscribed: no group join to wait for.
    consumer.assign([TopicPartition(topic, p, -2) for p in parts])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    try:
        while time.monotonic() < deadline and time.monotonic() - last < idle:
            batch = consumer.consume(num_messages=10000, timeout=0.5)
            for rec in batch:
                if rec.error() is None:
                    out.append(rec)
            if batch:
                last = time.monotonic()
    finally:
        consumer.close()
    return out


# -- sockets ----------------------------------------------------------------------------------


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a socket in LISTEN on ``port`` (from /proc/net/tcp and tcp6)."""
    found: list[str] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state = parts[1], parts[3]
                if state != "0A":  # LISTEN
                    continue
                addr_hex, port_hex = local.split(":")
                if int(port_hex, 16) != port:
                    continue
                if len(addr_hex) == 8:
                    addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
                else:
                    raw = bytes.fromhex(addr_hex)
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    addr = socket.inet_ntop(socket.AF_INET6, words)
                found.append(addr)
    return found


def can_connect(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def post(url: str, body: bytes, content_type: str = "application/json",
         timeout: float = 10.0) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- comparing with the engine ---------------------------------------------------------------


def wait_equal(workers: Sequence[WorkerProcess], engine: Any, timeout: float = 30.0) -> Samples:
    """``wait_matches`` where a worker that does not answer (starting, killed)
    contributes nothing, as long as one does."""
    return wait_matches(workers, engine, timeout, all_answer=False)
