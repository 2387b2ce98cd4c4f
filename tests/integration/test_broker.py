"""The embedded broker: every integration test and the demo stand on it."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

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
        assert log_path is not None and log_path.exists()

    assert not broker.running()
    assert not _pid_alive(pid)
    assert port_is_free(broker.port)
    assert not log_path.exists()  # the temporary log of a clean run is removed
    broker.stop()  # a second stop is harmless


def test_a_temporary_log_is_removed_after_a_clean_run_and_kept_after_a_crash() -> None:
    broker = EmbeddedBroker()
    logs = []
    for _ in range(2):  # started again: a new log, removed as well
        with broker:
            assert broker.log_path is not None and broker.log_path.exists()
            logs.append(broker.log_path)
        assert not logs[-1].exists() and broker.log_path is None
    assert logs[0] != logs[1]

    with EmbeddedBroker() as crashed:
        log_path = crashed.log_path
        assert log_path is not None and crashed.pid is not None
        os.kill(crashed.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while crashed.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not crashed.running()
    try:
        assert log_path.exists()  # what it wrote before it died is what explains it
    finally:
        log_path.unlink(missing_ok=True)


def test_a_failed_start_keeps_the_log_it_names(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'tansu: cannot bind, giving up'\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match="exited with code 3") as err:
        EmbeddedBroker(binary=str(fake), startup_timeout=5).start()
    named = re.search(r"log (\S+):", str(err.value))
    assert named is not None
    kept = Path(named.group(1))
    try:
        assert "cannot bind, giving up" in kept.read_text()
        assert "cannot bind, giving up" in str(err.value)
    finally:
        kept.unlink(missing_ok=True)


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
