"""The embedded broker: every integration test and the demo stand on it."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from agents.clients.broker import BrokerError, EmbeddedBroker, free_port, port_is_free

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie (stop() must have reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_start_produce_consume_stop() -> None:
    from kafka import KafkaConsumer, KafkaProducer

    broker = EmbeddedBroker()
    with broker:
        assert broker.running()
        pid = broker.pid
        assert pid is not None
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        assert broker.url == f"kafka://127.0.0.1:{broker.port}"
        topic = f"t-{uuid.uuid4().hex[:8]}"
        broker.create_topics({topic: 3})
        assert topic in broker.list_topics()
        broker.create_topics({topic: 3})  # idempotent

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        producer.send(topic, key=b"dns-1", value=b'{"component":"dns-1"}').get(timeout=10)
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
        )
        try:
            got = next(iter(consumer))
        finally:
            consumer.close()
        assert (got.key, got.value) == (b"dns-1", b'{"component":"dns-1"}')
        log_path = broker.log_path
        assert log_path is not None

    assert not broker.running()
    assert not _pid_alive(pid)
    assert port_is_free(broker.port)
    assert log_path.exists() and "tansu" in log_path.read_text()
    broker.stop()  # a second stop is harmless


def test_given_port_and_log_path(tmp_path: os.PathLike[str]) -> None:
    port = free_port()
    log = os.path.join(os.fspath(tmp_path), "b", "tansu.log")
    with EmbeddedBroker(port, log_path=log) as broker:
        assert broker.port == port
        assert not port_is_free(port)
    assert port_is_free(port)
    assert os.path.getsize(log) > 0


def test_port_taken_is_a_clear_error() -> None:
    with EmbeddedBroker() as first:
        t0 = time.monotonic()
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(first.port, startup_timeout=10).start()
        assert time.monotonic() - t0 < 10


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="tansu"):
        EmbeddedBroker().start()
