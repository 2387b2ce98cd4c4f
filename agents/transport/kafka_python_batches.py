"""kafka-python internals the publisher relies on: pre-encoded v2 record batches.

Why: kafka-python's ``send()`` costs 50-80 µs of Python per record, which caps a
publisher at ~11-15,000 events/s. ``Publisher`` encodes the record batches itself
(``_RecordBatchBuffer``) and hands each finished one to kafka-python's accumulator as a
``ProducerBatch`` whose records object is ``_PrebuiltRecords``; the sender thread still
does metadata, routing, retries, idempotence, SASL/TLS. This relies on the accumulator's
deques and lock, ``ProducerBatch`` and the records interface the sender calls: checked
against the kafka-python versions in ``agents.transport.versions.TESTED``
(``batch_path_supported``); any other version makes the publisher use plain ``send()``.
Upstream: none (kafka-python has no public API for pre-built batches).
"""

from __future__ import annotations

import struct
import time
from typing import Any

from agents.transport import versions

_CODEC_ATTR = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT_TABLE_SIZE = 1 << 14
#: Zigzag varints of 0..16383, precomputed: lengths and offset deltas are small, so the
#: per-record encoding is a handful of list lookups instead of bit twiddling in Python.
_ZZ: list[bytes] = [_zigzag_varint(i) for i in range(_VARINT_TABLE_SIZE)]


def _zz(n: int) -> bytes:
    return _ZZ[n] if 0 <= n < _VARINT_TABLE_SIZE else _zigzag_varint(n)


_NULL_KEY = _zigzag_varint(-1)
_CRC = struct.Struct(">I")


class _RecordBatchBuffer:
    """One partition's open batch: records in Kafka's v2 format, header written at close."""

    __slots__ = ("buf", "count", "created", "timestamp_ms")

    def __init__(self, now: float) -> None:
        self.buf = bytearray()
        self.count = 0
        self.created = now
        self.timestamp_ms = int(time.time() * 1000)

    def append(self, key: bytes | None, value: bytes) -> None:
        # attributes=0, timestamp delta=0 (all records carry the batch's create time,
        # accurate to linger_ms), offset delta, key, value, no headers.
        count = self.count
        zz = _ZZ
        od = zz[count] if count < _VARINT_TABLE_SIZE else _zigzag_varint(count)
        vl = len(value)
        vz = zz[vl] if vl < _VARINT_TABLE_SIZE else _zigzag_varint(vl)
        if key is None:
            body = b"".join((b"\x00\x00", od, _NULL_KEY, vz, value, b"\x00"))
        else:
            kl = len(key)
            kz = zz[kl] if kl < _VARINT_TABLE_SIZE else _zigzag_varint(kl)
            body = b"".join((b"\x00\x00", od, kz, key, vz, value, b"\x00"))
        bl = len(body)
        buf = self.buf
        buf += zz[bl] if bl < _VARINT_TABLE_SIZE else _zigzag_varint(bl)
        buf += body
        self.count = count + 1


class _PrebuiltRecords:
    """Stands in for kafka-python's MemoryRecordsBuilder in a ProducerBatch.

    The sender and accumulator only ask a batch's ``records`` for its size, its record
    count, to take the idempotent producer state, to close, and for the final bytes;
    this class answers those for a batch whose records were encoded by
    ``_RecordBatchBuffer``. It refuses appends, so kafka-python never adds to it.
    """

    __slots__ = (
        "_base_sequence",
        "_body",
        "_buffer",
        "_closed",
        "_codec",
        "_count",
        "_producer_epoch",
        "_producer_id",
        "_transactional",
        "_ts",
        "_uncompressed",
    )

    def __init__(self, body: bytearray, count: int, timestamp_ms: int, codec: str) -> None:
        self._body = body
        self._count = count
        self._ts = timestamp_ms
        self._codec = codec
        self._buffer: bytearray | None = None
        self._closed = False
        self._uncompressed = 0
        self._producer_id = -1
        self._producer_epoch = -1
        self._base_sequence = -1
        self._transactional = False

    def append(self, timestamp: object, key: object, value: object, headers: object = None) -> None:
        return None

    def next_offset(self) -> int:
        return self._count

    def is_full(self) -> bool:
        return True

    def set_producer_state(
        self, producer_id: int, producer_epoch: int, base_sequence: int, is_transactional: bool
    ) -> None:
        if self._closed:
            raise RuntimeError("producer state set on a closed batch")
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._transactional = bool(is_transactional)

    @property
    def producer_id(self) -> int:
        return self._producer_id

    @property
    def producer_epoch(self) -> int:
        return self._producer_epoch

    @property
    def base_sequence(self) -> int:
        return self._base_sequence

    def close(self) -> None:
        if self._closed:  # retries re-close: the bytes (and sequence) must not change
            return
        from kafka.record.default_records import DefaultRecordBatchBuilder as B
        from kafka.record.util import calc_crc32c

        body = bytes(self._body)
        self._uncompressed = B.HEADER_STRUCT.size + len(body)
        attrs = 0
        if self._codec != "none":
            compressed = _compress(self._codec, body)
            if len(compressed) < len(body):
                body = compressed
                attrs = _CODEC_ATTR[self._codec]
        if self._transactional:
            attrs |= B.TRANSACTIONAL_MASK
        buf = bytearray(B.HEADER_STRUCT.size)
        buf += body
        B.HEADER_STRUCT.pack_into(
            buf, 0,
            0,  # base offset: set by the broker
            len(buf) - B.AFTER_LEN_OFFSET,
            0,  # partition leader epoch: set by the broker
            2,  # magic
            0,  # crc, below
            attrs,
            self._count - 1,  # last offset delta
            self._ts,
            self._ts,
            self._producer_id,
            self._producer_epoch,
            self._base_sequence,
            self._count,
        )
        crc = calc_crc32c(memoryview(buf)[B.ATTRIBUTES_OFFSET:])
        _CRC.pack_into(buf, B.CRC_OFFSET, crc)
        self._buffer = buf
        self._body = bytearray()
        self._closed = True

    def buffer(self) -> bytearray:
        assert self._buffer is not None, "batch not closed"
        return self._buffer

    def size_in_bytes(self) -> int:
        if self._buffer is not None:
            return len(self._buffer)
        return 61 + len(self._body)

    def compression_rate(self) -> float:
        return self.size_in_bytes() / self._uncompressed if self._uncompressed else 1.0

    def records(self) -> Any:
        from kafka.record.memory_records import MemoryRecords

        return MemoryRecords(bytes(self.buffer()))


def _compress(codec: str, data: bytes) -> bytes:
    from kafka import codec as kc

    if codec == "gzip":
        out: bytes = kc.gzip_encode(data)
    elif codec == "snappy":
        out = kc.snappy_encode(data)
    elif codec == "lz4":
        out = kc.lz4_encode(data)
    elif codec == "zstd":
        out = kc.zstd_encode(data)
    else:  # pragma: no cover - choices are checked by argparse
        raise ValueError(codec)
    return out


def _codec_available(codec: str) -> bool:
    from kafka import codec as kc

    check = {"none": lambda: True, "gzip": kc.has_gzip, "snappy": kc.has_snappy,
             "lz4": kc.has_lz4, "zstd": kc.has_zstd}[codec]
    return bool(check())


def _has_c_crc32c() -> bool:
    try:
        from kafka.record import util
    except ImportError:  # pragma: no cover
        return False
    return getattr(util, "crc32c_c", None) is not None


def batch_path_supported() -> bool:
    """True when the installed kafka-python is one the batch path was checked against."""
    try:
        import kafka
        from kafka.producer.producer_batch import ProducerBatch  # noqa: F401
        from kafka.producer.record_accumulator import RecordAccumulator
        from kafka.record.default_records import DefaultRecordBatchBuilder as B
    except ImportError:
        return False
    version = str(getattr(kafka, "__version__", ""))
    needed = ("HEADER_STRUCT", "AFTER_LEN_OFFSET", "ATTRIBUTES_OFFSET", "CRC_OFFSET", "TRANSACTIONAL_MASK")
    return (
        versions.in_tested_range("kafka-python", version)
        and all(hasattr(B, n) for n in needed)
        and hasattr(RecordAccumulator, "_tp_lock")
    )


