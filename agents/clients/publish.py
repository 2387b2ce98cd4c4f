"""`slawatch publish`: send component events the way a monitoring tool's script would.

Two ways in: JSON lines on stdin (one event per line, as CONTRACT §1), or flags for one
event. Every line is checked with the worker's own parser before it is sent, so a typo
is reported here, with its line number, instead of silently ending in the DLQ.

Speed. kafka-python's ``send()`` costs 50-80 µs of Python per record (partitioner,
record builder, one future and lock dance per record) and computes the batch CRC32C in
pure Python unless the ``crc32c`` package is installed (~75 ms per 256 KiB batch, i.e.
~25 µs per small record). That caps a naive loop at ~11-15,000 events/s. ``Publisher``
therefore encodes the v2 record batches itself (a few list lookups per record) and
hands each finished batch to kafka-python's producer, whose sender thread still does
everything that is hard: metadata, leader routing, retries, idempotent sequence
numbers, SASL/TLS, delivery timeouts. Where the installed kafka-python has not been
checked to have the internals this relies on, it falls back to plain ``send()``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from agents.connection import (
    DEFAULT_BROKER,
    KafkaConnection,
    add_security_arguments,
    env_value,
)
from agents.connection import bootstrap_servers as bootstrap_servers  # re-exported
from agents.transport.kafka_python_batches import (
    _codec_available,
    _has_c_crc32c,
    _PrebuiltRecords,
    _RecordBatchBuffer,
    batch_path_supported,
)

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "component-events"
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")

#: Largest message value sent (Kafka's default message.max.bytes is ~1 MiB per batch).
MAX_MESSAGE_BYTES = 1_000_000

#: How often a long-running publisher looks for partitions added to its topic (seconds).
METADATA_CHECK_INTERVAL = 30.0

#: How many invalid lines are printed one by one before only counting them.
MAX_REPORTED_INVALID = 50


# -- settings ----------------------------------------------------------------------------


#: The publisher's connection settings are the worker's (``agents/connection.py``).
KafkaSettings = KafkaConnection


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Broker, topic, security and batching flags (shared with `simulate`)."""
    g = parser.add_argument_group("Kafka")
    g.add_argument("--broker", default=env_value("SLAWATCH_BROKER", DEFAULT_BROKER),
                   help="bootstrap URL(s), kafka://host:9092;host2:9092 or host:9092,host2:9092 "
                        "(env SLAWATCH_BROKER, default %(default)s)")
    g.add_argument("--topic", default=env_value("SLAWATCH_EVENTS_TOPIC", DEFAULT_TOPIC),
                   help="topic (env SLAWATCH_EVENTS_TOPIC, default %(default)s)")
    g.add_argument("--acks", choices=("all", "1", "0"), default="all",
                   help="acknowledgements to wait for (default %(default)s)")
    g.add_argument("--linger-ms", type=float, default=5.0,
                   help="how long a partly filled batch waits for more events (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=512 * 1024,
                   help="target record batch size in bytes (default %(default)s)")
    g.add_argument("--compression", choices=COMPRESSIONS, default="none",
                   help="record batch compression (default %(default)s)")
    g.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds to wait for the broker before giving up (default %(default)s)")
    g.add_argument("--per-record", action="store_true",
                   help="use kafka-python's per-record send() (slower; for comparison)")
    add_security_arguments(parser)


# -- the publisher -------------------------------------------------------------------------


class PublishError(RuntimeError):
    """The broker could not be reached or the topic does not exist."""


class Publisher:
    """A fast, keyed, batching kafka-python producer for component events.

    ``send(key, value)`` returns at once; ``flush()`` waits until everything sent so far
    is acknowledged or failed; ``acked``/``failed``/``first_error`` tell which. Messages
    are partitioned by murmur2 of the key, like Kafka's Java client and the worker.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str = DEFAULT_TOPIC,
        *,
        linger_ms: float = 5.0,
        batch_size: int = 512 * 1024,
        acks: str = "all",
        compression: str = "none",
        per_record: bool = False,
        max_buffered_bytes: int = 64 * 1024 * 1024,
        connect_timeout: float = 30.0,
        client_id: str = "slawatch-publish",
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError
        from kafka.partitioner.default import murmur2

        if not _codec_available(compression):
            raise PublishError(f"compression {compression!r} needs a codec library that is not installed")
        self.topic = topic
        self.batch_path = not per_record and batch_path_supported()
        if not per_record and not self.batch_path:
            log.warning("kafka-python version not checked for the batch path; using per-record send()")
        if not _has_c_crc32c():
            log.warning("the 'crc32c' package is not installed: kafka-python computes batch CRCs in "
                        "pure Python, which caps publishing at ~45,000 events/s (pip install crc32c)")
        self._linger = max(0.0, linger_ms) / 1000.0
        self._batch_size = max(1024, batch_size)
        self._compression = compression
        self._max_buffered = max_buffered_bytes
        self._murmur2 = murmur2
        ack_value: int | str = -1 if acks == "all" else int(acks)
        cfg = settings.client_config()
        cfg.update(
            client_id=client_id,
            acks=ack_value,
            # Idempotence needs acks=all; it keeps per-partition order across retries.
            enable_idempotence=(ack_value == -1),
            linger_ms=0 if self.batch_path else linger_ms,
            batch_size=self._batch_size,
            compression_type=None if compression == "none" else compression,
            bootstrap_timeout_ms=int(connect_timeout * 1000),
            max_block_ms=int(connect_timeout * 1000),
            metrics_enabled=False,
            # Auto-creation would pick the broker's default partition count, which need
            # not match what the workers were started with.
            allow_auto_create_topics=False,
        )
        try:
            self._producer = KafkaProducer(**cfg)
        except KafkaError as exc:
            raise PublishError(f"cannot connect to {settings.broker}: {exc}") from exc
        try:
            parts = self._producer.partitions_for(topic)
        except KafkaError as exc:
            self._producer.close(timeout=1)
            raise PublishError(
                f"no metadata for topic {topic!r} on {settings.broker} ({exc}); does it exist? "
                "`slawatch worker` creates it on start"
            ) from exc
        if not parts:
            self._producer.close(timeout=1)
            raise PublishError(f"topic {topic!r} has no partitions (does it exist?)")
        self._partitions: list[int] = sorted(parts)
        self._part_of: dict[bytes | None, int] = {}
        self._lock = threading.Lock()
        self._open: dict[int, _RecordBatchBuffer] = {}
        self._pending: deque[tuple[Any, int]] = deque()  # (produce future, bytes)
        self._pending_bytes = 0
        self.sent = 0  # handed to send()
        self.acked = 0
        self.failed = 0
        self.first_error: str | None = None
        self._closed = False
        self._has_open = threading.Event()
        self._linger_thread: threading.Thread | None = None
        if self.batch_path:
            self._linger_thread = threading.Thread(
                target=self._linger_loop, name="slawatch-publish-linger", daemon=True
            )
            self._linger_thread.start()

    # -- partitioning --------------------------------------------------------------------

    def partition_for(self, key: bytes | None) -> int:
        """murmur2(key) mod partitions, as the Java client and the worker compute it."""
        p = self._part_of.get(key)
        if p is None:
            if key is None:
                p = self._partitions[self.sent % len(self._partitions)]
                return p
            p = self._partitions[(self._murmur2(key) & 0x7FFFFFFF) % len(self._partitions)]
            if len(self._part_of) >= 200_000:
                self._part_of.clear()
            self._part_of[key] = p
        return p

    # -- sending -------------------------------------------------------------------------

    def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one message; blocks only when too much is waiting for the broker."""
        if self._closed:
            raise PublishError("publisher is closed")
        partition = self.partition_for(key)
        self.sent += 1
        if len(value) > MAX_MESSAGE_BYTES:
            # Brokers refuse it (message.max.bytes); better one clear failure than a
            # batch split and retried until the delivery timeout.
            self._record_failed(PublishError(f"message of {len(value)} bytes is over {MAX_MESSAGE_BYTES}"))
            return
        if not self.batch_path:
            fut = self._producer.send(self.topic, key=key, value=value, partition=partition)
            fut.add_errback(self._record_failed)
            return
        with self._lock:
            b = self._open.get(partition)
            if b is None:
                b = self._open[partition] = _RecordBatchBuffer(time.monotonic())
                self._has_open.set()
            elif len(b.buf) + len(value) + (len(key) if key else 0) + 16 > self._batch_size:
                self._seal(partition, b)
                b = self._open[partition] = _RecordBatchBuffer(time.monotonic())
            b.append(key, value)
        if self._pending_bytes > self._max_buffered:
            self._wait_pending(self._max_buffered // 2)

    def send_many(self, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
        n = 0
        for key, value in messages:
            self.send(key, value)
            n += 1
        return n

    def _record_failed(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"

    def _seal(self, partition: int, b: _RecordBatchBuffer) -> None:
        """Hand one finished batch to kafka-python's accumulator (caller holds the lock)."""
        from kafka.producer.producer_batch import ProducerBatch
        from kafka.structs import TopicPartition

        del self._open[partition]
        if not self._open:
            self._has_open.clear()
        if b.count == 0:
            return
        records = _PrebuiltRecords(b.buf, b.count, b.timestamp_ms, self._compression)
        tp = TopicPartition(self.topic, partition)
        batch = ProducerBatch(tp, records)
        count = b.count
        size = len(b.buf)

        def done(result: Any) -> None:
            # Runs on the sender thread; it is the only writer of acked/failed here.
            record_errors = result[2] if isinstance(result, tuple) and len(result) > 2 else None
            if record_errors is None:
                self.acked += count
            else:
                self.failed += count
                if self.first_error is None:
                    try:
                        err = record_errors(0)
                        self.first_error = f"{type(err).__name__}: {err}"
                    except Exception as exc:  # pragma: no cover - defensive
                        self.first_error = repr(exc)

        def failed(exc: BaseException) -> None:
            self.failed += count
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"

        batch.produce_future.add_callback(done)
        batch.produce_future.add_errback(failed)
        acc = self._producer._accumulator
        with acc._tp_lock(tp):
            acc._batches[tp].append(batch)
            acc._incomplete.add(batch)
        self._pending.append((batch.produce_future, size))
        self._pending_bytes += size
        self._producer._sender.wakeup()

    def _seal_all(self, older_than: float | None = None) -> None:
        with self._lock:
            for partition, b in list(self._open.items()):
                if older_than is None or b.created <= older_than:
                    self._seal(partition, b)
            self._trim_pending()

    def _trim_pending(self) -> None:
        pending = self._pending
        while pending and pending[0][0].is_done:
            self._pending_bytes -= pending.popleft()[1]

    def _wait_pending(self, target: int) -> None:
        """Backpressure: wait for the oldest batches until at most ``target`` bytes wait."""
        while True:
            with self._lock:
                self._trim_pending()
                if self._pending_bytes <= target or not self._pending:
                    return
                oldest = self._pending[0][0]
            oldest.wait(1.0)

    def _linger_loop(self) -> None:
        next_metadata_check = time.monotonic() + METADATA_CHECK_INTERVAL
        while not self._closed:
            self._has_open.wait(0.5)
            if self._closed:
                return
            if time.monotonic() >= next_metadata_check:
                next_metadata_check = time.monotonic() + METADATA_CHECK_INTERVAL
                self._refresh_partitions()
            if not self._has_open.is_set():
                continue
            time.sleep(self._linger)
            self._seal_all(older_than=time.monotonic() - self._linger)

    def _refresh_partitions(self) -> None:
        """Pick up partitions added to the topic, as the Java producer does."""
        try:
            parts = sorted(self._producer.partitions_for(self.topic) or ())
        except Exception as exc:  # the sender thread reports real trouble; keep going
            log.debug("partition refresh failed: %s", exc)
            return
        if parts and parts != self._partitions:
            log.warning("topic %s now has %d partitions (was %d)",
                        self.topic, len(parts), len(self._partitions))
            self._partitions = parts
            self._part_of = {}

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until each message is acknowledged or failed."""
        if self.batch_path:
            self._seal_all()
        self._producer.flush(timeout=timeout)
        if self.batch_path:
            with self._lock:
                self._trim_pending()

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            self._has_open.set()  # wake the linger thread so it exits
            self._producer.close(timeout=timeout)
            if self._linger_thread is not None:
                self._linger_thread.join(timeout=2)

    @property
    def unacknowledged(self) -> int:
        return self.sent - self.acked - self.failed

    def stats(self) -> dict[str, int]:
        if not self.batch_path:
            # Per-record path: only failures have callbacks (one future per record is
            # already most of its cost); after a flush the rest were acknowledged.
            return {"sent": self.sent, "failed": self.failed}
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed}

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(args: argparse.Namespace, client_id: str = "slawatch-publish") -> Publisher:
    """A Publisher from the flags of ``add_connection_arguments``."""
    settings = KafkaSettings.from_args(args)
    problems = settings.validate()
    if problems:
        raise PublishError("; ".join(problems))
    for warning in settings.warnings():
        print(f"slawatch: warning: {warning}", file=sys.stderr)
    return Publisher(
        settings,
        args.topic,
        linger_ms=args.linger_ms,
        batch_size=args.batch_size,
        acks=args.acks,
        compression=args.compression,
        per_record=args.per_record,
        connect_timeout=args.connect_timeout,
        client_id=client_id,
    )


# -- the subcommand --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Publish component events to Kafka: JSON lines on stdin (one event per line, "
        "CONTRACT §1), or one event from --component/--state. Every line is validated "
        "with the worker's rules first; invalid lines are reported with their line number "
        "and not sent. Exit status 1 if any line was invalid or any message failed."
    )
    e = parser.add_argument_group("one event from flags (instead of stdin)")
    e.add_argument("--component", help="component id, as in the catalog")
    e.add_argument("--state", help="up, down or maintenance")
    e.add_argument("--ts", help="RFC 3339 time with offset or epoch seconds (default: now)")
    e.add_argument("--source", help="the tool that saw it (nagios, prometheus, ...)")
    e.add_argument("--id", dest="event_id", help="producer's event id")
    i = parser.add_argument_group("input")
    i.add_argument("--file", "-f", default="-", help="read JSON lines from this file (default stdin)")
    i.add_argument("--no-validate", action="store_true",
                   help="send lines as they are, even invalid ones (to test the worker's DLQ)")
    i.add_argument("--quiet", "-q", action="store_true", help="print only errors and the summary")
    add_connection_arguments(parser)


@dataclass
class _LineStats:
    lines: int = 0
    invalid: int = 0


def _event_from_flags(args: argparse.Namespace) -> bytes:
    import orjson

    obj: dict[str, object] = {"component": args.component, "state": args.state}
    ts: object = time.time() if args.ts is None else args.ts
    if isinstance(ts, str):
        with contextlib.suppress(ValueError):  # else an RFC 3339 string: parse_event checks it
            ts = float(ts)
    obj["ts"] = ts
    if args.source is not None:
        obj["source"] = args.source
    if args.event_id is not None:
        obj["id"] = args.event_id
    return orjson.dumps(obj)


def _messages(
    lines: Iterable[bytes], validate: bool, stats: _LineStats, err: IO[str]
) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for each line worth sending; reports invalid ones on ``err``."""
    import orjson

    from streams.events import InvalidEvent, parse_event

    now = time.time()
    for number, line in enumerate(lines, 1):
        value = line.strip()
        if not value:
            continue
        stats.lines += 1
        if (number & 1023) == 0:
            now = time.time()
        if validate:
            try:
                event = parse_event(value, now)
            except InvalidEvent as exc:
                stats.invalid += 1
                if stats.invalid <= MAX_REPORTED_INVALID:
                    print(f"line {number}: {exc.reason}", file=err)
                elif stats.invalid == MAX_REPORTED_INVALID + 1:
                    print("... further invalid lines are only counted", file=err)
                continue
            yield event.component.encode(), value
        else:
            key: bytes | None = None
            try:
                obj = orjson.loads(value)
                if isinstance(obj, dict) and isinstance(obj.get("component"), str):
                    key = obj["component"].encode()
            except orjson.JSONDecodeError:
                pass
            yield key, value


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = sys.stderr
    if (args.component is None) != (args.state is None):
        print("slawatch publish: --component and --state go together", file=err)
        return 2
    if args.component is not None:
        lines: Iterable[bytes] = [_event_from_flags(args)]
        source = "flags"
    elif args.file == "-":
        if sys.stdin.isatty() and not args.quiet:
            print("reading JSON lines from stdin (Ctrl-D ends)...", file=err)
        lines = sys.stdin.buffer
        source = "stdin"
    else:
        try:
            lines = open(args.file, "rb")  # noqa: SIM115 - closed at exit
        except OSError as exc:
            print(f"slawatch publish: {exc}", file=err)
            return 2
        source = args.file
    try:
        publisher = connect(args)
    except PublishError as exc:
        print(f"slawatch publish: {exc}", file=err)
        return 2
    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a cron timeout's SIGTERM: flush what was read, then stop

    signal.signal(signal.SIGTERM, _terminate)
    stats = _LineStats()
    started = time.monotonic()
    interrupted = False
    try:
        publisher.send_many(_messages(lines, not args.no_validate, stats, err))
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: sending what was read so far", file=err)
    finally:
        try:
            publisher.close()
        except Exception as exc:
            print(f"slawatch publish: while flushing: {exc}", file=err)
        if hasattr(lines, "close") and source not in ("stdin", "flags"):
            lines.close()
    elapsed = max(time.monotonic() - started, 1e-9)
    s = publisher.stats()
    failed = s["failed"]
    not_confirmed = publisher.unacknowledged if publisher.batch_path else 0
    failed += not_confirmed
    delivered = s["sent"] - failed
    summary = (
        f"{source}: {stats.lines} lines, {delivered} sent to {args.topic}, "
        f"{failed} failed, {stats.invalid} invalid ({delivered / elapsed:,.0f} events/s)"
    )
    if failed and publisher.first_error:
        summary += f"; first error: {publisher.first_error}"
    if not args.quiet or failed or stats.invalid:
        print(summary, file=err)
    return 1 if (failed or stats.invalid or interrupted) else 0
