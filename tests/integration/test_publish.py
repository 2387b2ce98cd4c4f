"""`slawatch publish`: record batch encoding, line validation, and a real broker round trip."""

from __future__ import annotations

import argparse
import io
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from agents.cli.main import build_parser
from agents.clients import publish
from agents.clients.broker import EmbeddedBroker
from agents.clients.publish import (
    KafkaSettings,
    Publisher,
    PublishError,
    _LineStats,
    _messages,
    bootstrap_servers,
)
from agents.transport.kafka_python_batches import (
    _PrebuiltRecords,
    _RecordBatchBuffer,
    batch_path_supported,
)

# -- pure units ----------------------------------------------------------------------


def test_bootstrap_servers() -> None:
    assert bootstrap_servers("kafka://localhost:9092") == ["localhost:9092"]
    assert bootstrap_servers("kafka://a:1;b:2") == ["a:1", "b:2"]
    assert bootstrap_servers("a:1,b") == ["a:1", "b:9092"]
    with pytest.raises(ValueError):
        bootstrap_servers("http://a:1")
    with pytest.raises(ValueError):
        bootstrap_servers(" ; ")


def test_installed_kafka_python_takes_the_batch_path() -> None:
    # If this fails after a kafka-python upgrade, check _PrebuiltRecords against the new
    # accumulator/sender and add the version to _CHECKED_KAFKA_PYTHON.
    assert batch_path_supported()


def _decode(buf: bytes) -> list[tuple[int, bytes | None, bytes | None, int]]:
    from kafka.record.memory_records import MemoryRecords

    records = MemoryRecords(bytes(buf))
    out = []
    batch = records.next_batch()
    assert batch is not None
    assert batch.validate_crc()
    while batch is not None:
        for r in batch:
            out.append((r.offset, r.key, r.value, r.timestamp))
        batch = records.next_batch()
    return out


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_record_batch_encoding_matches_kafka_python_decoder(codec: str) -> None:
    b = _RecordBatchBuffer(time.monotonic())
    expected: list[tuple[bytes | None, bytes]] = []
    for i in range(20_000):  # offset deltas past the precomputed varint table
        key = None if i % 7 == 0 else f"comp-{i}".encode()
        value = orjson.dumps({"component": f"comp-{i}", "state": "up", "ts": 1.5 * i})
        expected.append((key, value))
        b.append(key, value)
    big = b"x" * 70_000  # a value longer than the varint table
    b.append(b"k", big)
    expected.append((b"k", big))
    records = _PrebuiltRecords(b.buf, b.count, b.timestamp_ms, codec)
    assert records.next_offset() == len(expected)
    records.append(0, b"k", b"v")  # refused: kafka-python must never add to it
    assert records.next_offset() == len(expected) and records.is_full()
    records.set_producer_state(42, 3, 1000, False)
    records.close()
    first = bytes(records.buffer())
    records.close()  # a retry closes again: bytes must not change
    assert bytes(records.buffer()) == first
    assert (records.producer_id, records.producer_epoch, records.base_sequence) == (42, 3, 1000)
    if codec == "gzip":
        assert records.compression_rate() < 0.5
    decoded = _decode(first)
    assert [(k, v) for _, k, v, _ in decoded] == expected
    assert [o for o, *_ in decoded] == list(range(len(expected)))
    assert {ts for *_, ts in decoded} == {b.timestamp_ms}


def test_invalid_lines_are_reported_with_numbers_and_not_sent() -> None:
    now = time.time()
    lines = [
        orjson.dumps({"component": "dns-1", "state": "down", "ts": now}),
        b"",
        b"not json",
        orjson.dumps({"component": "dns-2", "state": "sideways", "ts": now}),
        b'  {"component": "mx-1", "state": "UP", "ts": "2024-01-01T00:00:00Z"}  \n',
        orjson.dumps({"component": "dns-1", "state": "up", "ts": now + 3600}),
    ]
    err = io.StringIO()
    stats = _LineStats()
    out = list(_messages(lines, True, stats, err))
    assert [k for k, _ in out] == [b"dns-1", b"mx-1"]
    assert out[1][1] == b'{"component": "mx-1", "state": "UP", "ts": "2024-01-01T00:00:00Z"}'
    assert (stats.lines, stats.invalid) == (5, 3)
    report = err.getvalue().splitlines()
    assert report[0] == "line 3: invalid: not JSON"
    assert report[1].startswith("line 4: invalid: unknown state")
    assert report[2].startswith("line 6: invalid: ts") and "future" in report[2]


def test_no_validate_sends_everything_keyed_when_possible() -> None:
    stats = _LineStats()
    out = list(_messages([b"garbage", b'{"component": "a", "state": 1}'], False, stats, io.StringIO()))
    assert out == [(None, b"garbage"), (b"a", b'{"component": "a", "state": 1}')]
    assert stats.invalid == 0


def test_flag_errors_need_no_broker(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser("publish").parse_args(["publish", "--component", "dns-1"])
    assert publish.run(args) == 2
    assert "--component and --state go together" in capsys.readouterr().err


def test_sasl_without_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLAWATCH_SASL_PASSWORD", raising=False)
    args = build_parser("publish").parse_args(
        ["publish", "--security-protocol", "SASL_SSL", "--sasl-username", "u"]
    )
    settings = KafkaSettings.from_args(args)
    assert any("password" in p for p in settings.validate())
    monkeypatch.setenv("SLAWATCH_SASL_PASSWORD", "s3cret")
    settings = KafkaSettings.from_args(args)
    assert settings.validate() == []
    assert "s3cret" not in repr(settings)
    cfg = settings.client_config()
    assert cfg["sasl_plain_password"] == "s3cret" and cfg["security_protocol"] == "SASL_SSL"


# -- against a real broker -------------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> EmbeddedBroker:  # type: ignore[misc]
    with EmbeddedBroker() as b:
        yield b


def _consume(broker: EmbeddedBroker, topic: str, expect: int, timeout: float = 20.0) -> list[object]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        max_poll_records=10_000,
    )
    got: list[object] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
    finally:
        consumer.close()
    return got


def _murmur_partition(key: bytes, n: int) -> int:
    from kafka.partitioner.default import murmur2

    return int((murmur2(key) & 0x7FFFFFFF) % n)


@pytest.mark.integration
@pytest.mark.parametrize("per_record", [False, True])
def test_publisher_round_trip_keys_partitions_order(broker: EmbeddedBroker, per_record: bool) -> None:
    topic = f"events-{'rec' if per_record else 'batch'}"
    broker.create_topics({topic: 5})
    n = 30_000
    now = time.time()
    sent: list[tuple[bytes, bytes]] = []
    with Publisher(KafkaSettings(broker=broker.url), topic, per_record=per_record, batch_size=64 * 1024) as p:
        assert p.batch_path is not per_record
        for i in range(n):
            key = f"comp-{i % 97}".encode()
            value = orjson.dumps({"component": key.decode(), "state": "up", "ts": now + i * 1e-3})
            p.send(key, value)
            sent.append((key, value))
        p.flush()
        assert p.failed == 0
        if not per_record:
            assert p.acked == n
    got = _consume(broker, topic, n)
    assert len(got) == n
    by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for m in got:
        assert m.partition == _murmur_partition(m.key, 5)  # type: ignore[attr-defined]
        by_key[m.key].append(m.value)  # type: ignore[attr-defined]
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for k, v in sent:
        expected[k].append(v)
    assert by_key == expected  # every message once, in order per key


@pytest.mark.integration
def test_oversized_message_fails_alone(broker: EmbeddedBroker) -> None:
    broker.create_topics({"big": 1})
    with Publisher(KafkaSettings(broker=broker.url), "big") as p:
        p.send(b"a", b"x" * (publish.MAX_MESSAGE_BYTES + 1))
        p.send(b"a", b'{"component":"a","state":"up","ts":1}')
        p.flush()
        assert (p.sent, p.acked, p.failed) == (2, 1, 1)
        assert p.first_error is not None and "bytes is over" in p.first_error


@pytest.mark.integration
def test_linger_sends_a_partial_batch_without_flush(broker: EmbeddedBroker) -> None:
    broker.create_topics({"linger": 2})
    with Publisher(KafkaSettings(broker=broker.url), "linger", linger_ms=20) as p:
        p.send(b"dns-1", b'{"component":"dns-1","state":"up","ts":1}')
        deadline = time.monotonic() + 10
        while p.acked < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.acked == 1


@pytest.mark.integration
def test_cli_stdin_file_reports_and_exit_status(
    broker: EmbeddedBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.create_topics({"cli": 3})
    now = time.time()
    lines = [orjson.dumps({"component": f"mx-{i % 3}", "state": "up", "ts": now}) for i in range(1000)]
    lines.insert(10, b'{"component": "mx-1"}')
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    def run(*extra: str) -> int:
        args: argparse.Namespace = build_parser("publish").parse_args(
            ["publish", "--broker", broker.url, "--topic", "cli", *extra]
        )
        return publish.run(args)

    assert run("--file", str(path)) == 1
    err = capsys.readouterr().err
    assert "line 11: invalid: missing field state" in err
    assert "1001 lines, 1000 sent to cli, 0 failed, 1 invalid" in err

    assert run("--component", "dns-1", "--state", "DOWN", "--source", "nagios", "--id", "e1") == 0
    assert "1 sent to cli, 0 failed, 0 invalid" in capsys.readouterr().err
    got = _consume(broker, "cli", 1001)
    assert len(got) == 1001
    single = [orjson.loads(m.value) for m in got if m.key == b"dns-1"]  # type: ignore[attr-defined]
    assert len(single) == 1 and single[0]["state"] == "DOWN" and single[0]["id"] == "e1"
    assert abs(single[0]["ts"] - time.time()) < 60


@pytest.mark.integration
def test_unreachable_broker_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.clients.broker import free_port

    args = build_parser("publish").parse_args(
        ["publish", "--broker", f"kafka://127.0.0.1:{free_port()}", "--connect-timeout", "1",
         "--component", "a", "--state", "up"]
    )
    t0 = time.monotonic()
    assert publish.run(args) == 2
    assert time.monotonic() - t0 < 10
    assert "cannot connect" in capsys.readouterr().err


def test_unknown_codec_is_refused_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "_codec_available", lambda codec: False)
    with pytest.raises(PublishError, match="codec"):
        Publisher(KafkaSettings(broker="kafka://127.0.0.1:1"), compression="zstd")


@pytest.mark.integration
def test_sigterm_sends_what_was_read_then_exits(broker: EmbeddedBroker) -> None:
    import signal
    import subprocess
    import sys

    broker.create_topics({"term": 2})
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli.main", "publish", "--broker", broker.url, "--topic", "term"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    now = time.time()
    for i in range(10):
        proc.stdin.write(orjson.dumps({"component": f"c{i}", "state": "up", "ts": now}) + b"\n")
    proc.stdin.flush()
    got = _consume(broker, "term", 10, timeout=20)  # linger sends them while stdin stays open
    assert len(got) == 10
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    err = proc.stderr.read().decode()
    proc.stdin.close()
    assert code == 1, err
    assert "interrupted" in err and "10 sent to term, 0 failed" in err
