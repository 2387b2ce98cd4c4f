"""The wire form of a segments message (stage 1 -> stage 2), in columns of binary.

An alert storm sends two segments per event over the repartition topic; as JSON,
formatting the floats in stage 1 and parsing them back in stage 2 cost more than
applying them (about 4 of 10 µs per segment). Here the times travel as IEEE 754
doubles and the states as bytes, each column converted in one C call, so a segment
costs a fraction of a microsecond each way and comes back bit for bit.

Layout (little-endian): ``MAGIC``, ``n`` (uint32), ``n`` starts (float64), ``n`` ends
(float64, +inf for "from start on"), ``n`` states (uint8: 0 up, 1 maintenance,
2 down), then the ``n`` component ids in UTF-8 joined by ``\\n`` (an id cannot hold one).
A message that does not start with ``MAGIC`` is read as the JSON list of
``[component, start, end|null, state]`` that earlier versions sent, so segments
written before an upgrade are still applied.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any, NamedTuple

import orjson

MAGIC = b"\x00seg1"
_HEAD = struct.Struct("<I")
_BIG_ENDIAN = sys.byteorder == "big"
_INF = math.inf
_INF_BYTES = struct.pack("<d", _INF)
_intern = sys.intern

#: ``(component, start, end, state)``, end ``math.inf`` when open.
Segment = tuple[str, float, float, int]


def encode(segs: Sequence[Sequence[Any]]) -> bytes:
    """One message for ``segs`` (tuples as ``batch.apply_columns`` makes them)."""
    comps, starts, ends, states = zip(*segs, strict=True)
    a_start = array("d", starts)
    a_end = array("d", ends)
    if _BIG_ENDIAN:  # pragma: no cover - no such machine here
        a_start.byteswap()
        a_end.byteswap()
    return b"".join((MAGIC, _HEAD.pack(len(comps)), a_start.tobytes(), a_end.tobytes(),
                     bytes(states), "\n".join(comps).encode()))


class Columns(NamedTuple):
    """The segments of one or more messages as columns; ``ends`` None when all are open.

    Stage 2 applies them straight from here: in an alert storm a tuple and two float
    objects per segment (one of them the same infinity every time) were 12% of the
    worker's time.
    """

    comps: list[str]
    starts: list[float]
    ends: list[float] | None
    states: bytes


def decode(raw: bytes) -> list[Segment]:
    """The segments of a message; ValueError if it is not one (never ours, or damaged)."""
    comps, starts, ends, states = decode_columns(raw)
    return list(zip(comps, starts, repeat(_INF, len(comps)) if ends is None else ends, states,
                    strict=True))


def concat(parts: Sequence[Columns]) -> Columns:
    """The columns of several messages, in order."""
    if len(parts) == 1:
        return parts[0]
    comps = list(chain.from_iterable(c.comps for c in parts))
    starts = list(chain.from_iterable(c.starts for c in parts))
    ends = None
    if any(c.ends is not None for c in parts):
        ends = list(chain.from_iterable(
            repeat(_INF, len(c.comps)) if c.ends is None else c.ends for c in parts))
    return Columns(comps, starts, ends, b"".join(c.states for c in parts))


def decode_columns(raw: bytes) -> Columns:
    """The segments of a message as columns; ValueError if it is not one."""
    if not raw.startswith(MAGIC):
        segs = _decode_json(raw)
        return Columns([g[0] for g in segs], [g[1] for g in segs], [g[2] for g in segs],
                       bytes(g[3] for g in segs))
    view = memoryview(raw)
    o = len(MAGIC)
    if len(raw) < o + _HEAD.size:
        raise ValueError("segments message cut short")
    (n,) = _HEAD.unpack_from(raw, o)
    o += _HEAD.size
    if n == 0 or len(raw) < o + 17 * n:
        raise ValueError(f"segments message of {len(raw)} bytes cannot hold {n} segments")
    starts = array("d")
    starts.frombytes(view[o:o + 8 * n])
    end_bytes = raw[o + 8 * n:o + 16 * n]
    # n non-overlapping 8-byte matches in 8n bytes tile them: every end is +inf.
    ends: array[float] | None = None
    if end_bytes.count(_INF_BYTES) != n:
        ends = array("d")
        ends.frombytes(end_bytes)
    if _BIG_ENDIAN:  # pragma: no cover
        starts.byteswap()
        if ends is not None:
            ends.byteswap()
    states = raw[o + 16 * n:o + 17 * n]
    # Interned, as the catalog's ids are: the trackers' dict lookups then match by identity.
    comps = list(map(_intern, bytes(view[o + 17 * n:]).decode().split("\n")))
    if len(comps) != n or max(states) > 2 or not all(map(math.isfinite, starts)) \
            or (ends is not None and any(map(math.isnan, ends))):
        raise ValueError("not a valid segments message")
    return Columns(comps, starts.tolist(), None if ends is None else ends.tolist(), states)


def _decode_json(raw: bytes) -> list[Segment]:
    """The JSON form: ``[[component, start, end|null, state], ...]``."""
    segs = orjson.loads(raw)
    if type(segs) is not list or not segs:
        raise ValueError("not a list of segments")
    out: list[Segment] = []
    for comp, start, end, state in segs:  # ValueError/TypeError when not 4 items
        if (type(comp) is not str or state not in (0, 1, 2) or type(state) is bool
                or type(start) not in (float, int) or type(end) not in (float, int, type(None))):
            raise ValueError(f"not a segment: {[comp, start, end, state]!r}")
        out.append((comp, float(start), _INF if end is None else float(end), int(state)))
    return out

