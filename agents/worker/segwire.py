"""The wire form of a segments message (stage 1 -> stage 2), in columns of binary.

An alert storm sends two segments per event over the repartition topic; as JSON,
formatting the floats in stage 1 and parsing them back in stage 2 cost more than
applying them (about 4 of 10 µs per segment). Here the times travel as IEEE 754
doubles and the states as bytes, each column converted in one C call, so a segment
costs a fraction of a microsecond each way and comes back bit for bit.

Layout (little-endian): ``MAGIC``, ``n`` (uint32), ``n`` starts (float64), ``n`` ends
(float64, +inf for "from start on"), ``n`` states (uint8: 0 up, 1 maintenance,
2 down), then the ``n`` component ids in UTF-8 joined by ``\\n`` (an id cannot hold one).
A message that does not start with ``MAGIC`` or ``MAGIC_MANY`` is read as the JSON list
of ``[component, start, end|null, state]`` that earlier versions sent, so segments
written before an upgrade are still applied.

Stage 1 sends the segments of many services in one message (``encode_many``): one per
segments partition a fetch, not one per service. Each record costs the producer, the
broker and the consumer the same whatever it holds (~20 µs to send alone), and at
services of one component, or 20,000 components, a fetch made 4,000 messages of a few
segments each. Layout: ``MAGIC_MANY``, ``k`` services, ``n`` segments and ``j`` (uint32
each), ``k`` segment counts (uint32), then the columns as above (``n`` starts, ends,
states), then the ``k`` service names as a JSON list of ``j`` bytes (a service name may
hold any character), then the component ids joined by ``\n``. Each service's segments
are consecutive, in their order. Read by ``decode_many``; a service's segments may be
cut over several messages (each below ``MAX_BYTES``), read in order.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, NamedTuple

import orjson

from streams import native

MAGIC = b"\x00seg1"
MAGIC_MANY = b"\x00seg2"
_HEAD = struct.Struct("<I")
_HEAD_MANY = struct.Struct("<III")
#: Largest message ``encode_many`` makes (bytes), well below a producer's request size
#: (Faust's default is 1,000,000) and any broker's message size limit.
MAX_BYTES = 256 * 1024
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


def messages(fanout: Mapping[str, Sequence[Sequence[Any]]], partition_of: Callable[[str], int],
             single: bool = False) -> list[tuple[int, bytes | None, bytes]]:
    """``(partition, key, value)`` of the segments messages for ``fanout`` (service ->
    its segments, in order): one per segments partition holding its services
    (``encode_many``), or with ``single`` one per service keyed by its name
    (``encode``, the only form releases up to 0.1.0 read)."""
    if single:
        return [(partition_of(name), name.encode(), encode(segs)) for name, segs in fanout.items()]
    by_part: dict[int, list[tuple[str, Sequence[Sequence[Any]]]]] = {}
    # A Partitioner's ``many`` reads its memo in one C loop: a Python call a service
    # (``__call__``) cost ~3,400 instructions, 4% of both stages at 20,000 components.
    many = getattr(partition_of, "many", None)
    parts = many(list(fanout)) if many is not None else map(partition_of, fanout)
    for (name, segs), sp in zip(fanout.items(), parts, strict=True):
        shares = by_part.get(sp)
        if shares is None:
            by_part[sp] = [(name, segs)]
        else:
            shares.append((name, segs))
    return [(sp, None, value) for sp, shares in by_part.items() for value in encode_many(shares)]


def encode_many(items: Sequence[tuple[str, Sequence[Sequence[Any]]]],
                max_bytes: int = MAX_BYTES) -> list[bytes]:
    """The messages for the segments of several services (``(service, segments)``, each
    list non-empty); more than one only when one would exceed ``max_bytes``: then each
    message is filled in order as far as it goes (a service's segments may be cut over
    consecutive messages) and only a single segment may pass ``max_bytes``."""
    names = [name for name, _ in items]
    n, body, ids, sizes = _columns(items)
    head = orjson.dumps(names)
    if len(MAGIC_MANY) + _HEAD_MANY.size + len(body) + len(head) + len(ids) <= max_bytes or n == 1:
        return [b"".join((MAGIC_MANY, _HEAD_MANY.pack(len(names), n, len(head)), body, head, ids))]
    return _cut(names, n, body, ids, sizes, max_bytes)


def _columns(items: Sequence[tuple[str, Sequence[Sequence[Any]]]]
             ) -> tuple[int, bytes, bytes, bytes]:
    """``(n, body, ids, sizes)``: the segment count; the columns (each service's count,
    then every start, end and state); the component ids joined by newlines; per service
    the bytes of its ids with a newline each (uint32)."""
    fast = native.native
    if fast is not None and not _BIG_ENDIAN and type(items) is list:
        # The columns in one pass in C (a zip over every segment of a fetch cost more
        # than applying them).
        return fast.encode_segments(items)  # type: ignore[no-any-return]
    counts = array("I", [len(segs) for _, segs in items])
    sizes = array("I", [sum(len(seg[0].encode()) + 1 for seg in segs) for _, segs in items])
    comps, starts, ends, states = zip(*chain.from_iterable(segs for _, segs in items), strict=True)
    a_start = array("d", starts)
    a_end = array("d", ends)
    if _BIG_ENDIAN:  # pragma: no cover - no such machine here
        counts.byteswap()
        sizes.byteswap()
        a_start.byteswap()
        a_end.byteswap()
    return (len(comps), b"".join((counts.tobytes(), a_start.tobytes(), a_end.tobytes(),
                                  bytes(states))), "\n".join(comps).encode(), sizes.tobytes())


def _uint32s(raw: bytes | memoryview) -> array[int]:
    col = array("I")
    if col.itemsize != 4:  # pragma: no cover - no such machine here
        col = array("L")
    col.frombytes(raw)
    if _BIG_ENDIAN:  # pragma: no cover
        col.byteswap()
    return col


def _cut(names: list[str], n: int, body: bytes, ids: bytes, sizes: bytes,
         max_bytes: int) -> list[bytes]:
    """The messages of ``encode_many`` when one is too large, sliced from the columns
    encoded once (cutting by halves and encoding each half again made a segment of a
    large fetch be encoded three or four times: a third of the worker's CPU at a
    fan-out of 5). Sizes are counted exactly, with a byte to spare per name."""
    k = len(names)
    counts = _uint32s(body[:4 * k])
    id_bytes = _uint32s(sizes)
    view = memoryview(body)
    s0 = 4 * k
    e0 = s0 + 8 * n
    t0 = e0 + 8 * n
    # "[" and "]" of the names; per name its JSON, a comma and its count (4); per
    # segment 17 bytes of columns, its id and a newline.
    room = max_bytes - len(MAGIC_MANY) - _HEAD_MANY.size - 2
    out: list[bytes] = []
    m_names: list[str] = []
    m_counts: list[int] = []
    first = 0  # the message's first segment, and where its ids start in ``ids``
    first_off = 0
    used = 0

    def flush(last: int, last_off: int) -> None:
        nonlocal first, first_off, used
        a_counts = array("I", m_counts)
        if _BIG_ENDIAN:  # pragma: no cover
            a_counts.byteswap()
        head = orjson.dumps(m_names)
        out.append(b"".join((MAGIC_MANY, _HEAD_MANY.pack(len(m_names), last - first, len(head)),
                             a_counts.tobytes(), view[s0 + 8 * first:s0 + 8 * last],
                             view[e0 + 8 * first:e0 + 8 * last], view[t0 + first:t0 + last],
                             head, ids[first_off:last_off - 1])))
        m_names.clear()
        m_counts.clear()
        first, first_off, used = last, last_off, 0

    pos = 0  # the next segment, and where its id starts
    off = 0
    for name, count, size in zip(names, counts, id_bytes, strict=True):
        per_name = 5 + len(orjson.dumps(name))
        end = pos + count
        end_off = off + size
        while pos < end:
            need = per_name + 17 * (end - pos) + end_off - off
            if used + need <= room:
                take, take_off = end - pos, end_off
            else:
                # As many of this service's segments as still fit, in order.
                left = room - used - per_name
                take, take_off = 0, off
                while pos + take < end:
                    nl = ids.find(b"\n", take_off)
                    after = len(ids) + 1 if nl < 0 else nl + 1
                    left -= 17 + after - take_off
                    if left < 0 and (take or m_names):
                        break
                    take += 1
                    take_off = after
                if take == 0:  # the message is full: this service starts the next one
                    flush(pos, off)
                    continue
            m_names.append(name)
            m_counts.append(take)
            used += per_name + 17 * take + take_off - off
            pos += take
            off = take_off
            if pos < end or used >= room:
                flush(pos, off)
    if m_names:
        flush(pos, off)
    return out


class Columns(NamedTuple):
    """The segments of one or more messages as columns; ``ends`` None when all are open.

    Stage 2 applies them straight from here: in an alert storm a tuple and two float
    objects per segment (one of them the same infinity every time) were 12% of the
    worker's time.
    """

    comps: list[str]
    starts: Sequence[float]  # a list, or array('d') from decode_many
    ends: Sequence[float] | None
    states: bytes


def decode(raw: bytes) -> list[Segment]:
    """The segments of a message; ValueError if it is not one (never ours, or damaged)."""
    comps, starts, ends, states = decode_columns(raw)
    return list(zip(comps, starts, repeat(_INF, len(comps)) if ends is None else ends, states,
                    strict=True))


def concat(parts: Sequence[Columns]) -> Columns:
    """The columns of several messages, in order (times as arrays of doubles when any
    part has them so, as ``decode_many`` gives them)."""
    if len(parts) == 1:
        return parts[0]
    comps = list(chain.from_iterable(c.comps for c in parts))
    starts: Sequence[float]
    ends: Sequence[float] | None = None
    if all(type(c.starts) is list for c in parts):
        starts = list(chain.from_iterable(c.starts for c in parts))
        if any(c.ends is not None for c in parts):
            ends = list(chain.from_iterable(
                repeat(_INF, len(c.comps)) if c.ends is None else c.ends for c in parts))
    else:
        a_start = array("d")
        for c in parts:
            a_start.extend(c.starts)
        starts = a_start
        if any(c.ends is not None for c in parts):
            a_end = array("d")
            for c in parts:
                a_end.extend(_INF_COLUMN * len(c.comps) if c.ends is None else c.ends)
            ends = a_end
    return Columns(comps, starts, ends, b"".join(c.states for c in parts))


_INF_COLUMN = array("d", [_INF])


def _times(raw: bytes, o: int, n: int) -> tuple[array[float], array[float] | None]:
    """The ``n`` starts and ends at offset ``o`` of a message, as arrays of doubles; the
    ends None when all are +inf (open-ended)."""
    starts = array("d")
    starts.frombytes(memoryview(raw)[o:o + 8 * n])
    end_bytes = raw[o + 8 * n:o + 16 * n]
    # All open-ended (every end +inf) when the bytes are n copies of +inf: one
    # comparison, where a search per end cost ~100 instructions each.
    ends: array[float] | None = None
    if end_bytes != _INF_BYTES * n:
        ends = array("d")
        ends.frombytes(end_bytes)
    if _BIG_ENDIAN:  # pragma: no cover
        starts.byteswap()
        if ends is not None:
            ends.byteswap()
    return starts, ends


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
    starts, ends = _times(raw, o, n)
    states = raw[o + 16 * n:o + 17 * n]
    # Interned, as the catalog's ids are: the trackers' dict lookups then match by identity.
    comps = list(map(_intern, bytes(view[o + 17 * n:]).decode().split("\n")))
    if len(comps) != n or max(states) > 2 or not all(map(math.isfinite, starts)) \
            or (ends is not None and any(map(math.isnan, ends))):
        raise ValueError("not a valid segments message")
    return Columns(comps, starts.tolist(), None if ends is None else ends.tolist(), states)


def decode_many(raw: bytes) -> list[tuple[str, Columns]]:
    """The ``(service, columns)`` of a message of ``encode_many``, in order; ValueError
    if it is not one (never ours, or damaged)."""
    if not raw.startswith(MAGIC_MANY):
        raise ValueError("not a segments message of several services")
    view = memoryview(raw)
    o = len(MAGIC_MANY)
    if len(raw) < o + _HEAD_MANY.size:
        raise ValueError("segments message cut short")
    k, n, j = _HEAD_MANY.unpack_from(raw, o)
    o += _HEAD_MANY.size
    if k == 0 or n < k or len(raw) < o + 4 * k + 17 * n + j:
        raise ValueError(f"segments message of {len(raw)} bytes cannot hold {n} segments "
                         f"of {k} services")
    counts = _uint32s(view[o:o + 4 * k])
    o += 4 * k
    starts, ends = _times(raw, o, n)
    states = raw[o + 16 * n:o + 17 * n]
    o += 17 * n
    try:
        names = orjson.loads(view[o:o + j])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"segments message: service names: {exc}") from None
    comps = _ids(view[o + j:], n)
    if (type(names) is not list or len(names) != k or not all(type(x) is str for x in names)
            or sum(counts) != n or 0 in counts or states.translate(None, _STATES)
            or not _finite(starts) or (ends is not None and _float_kinds(ends)[0])):
        raise ValueError("not a valid segments message")
    if k == 1:
        return [(names[0], Columns(comps, starts, ends, states))]
    # The times stay arrays of doubles (sliced per service): stage 2 applies them from
    # there (``ServiceTracker.apply_columns``), without a float object per segment.
    fast = native.native
    if fast is not None:
        return fast.split_columns(names, counts, comps, starts, ends, states,  # type: ignore[no-any-return]
                                  Columns)
    out: list[tuple[str, Columns]] = []
    a = 0
    for name, c in zip(names, counts, strict=True):
        b = a + c
        out.append((name, Columns(comps[a:b], starts[a:b], None if ends is None else ends[a:b],
                                  states[a:b])))
        a = b
    return out


#: The states a segment may have (``bytes.translate`` deletes them: what is left is not).
_STATES = bytes((0, 1, 2))


def _ids(raw: memoryview, n: int) -> list[str]:
    """The ``n`` component ids of a message, interned, as the catalog's are (the
    trackers' dict lookups then match by identity); ValueError unless exactly ``n``,
    none empty."""
    fast = native.native
    if fast is not None:
        return fast.segment_ids(raw, n)  # type: ignore[no-any-return]
    comps = list(map(_intern, bytes(raw).decode().split("\n")))
    if len(comps) != n or "" in comps:
        raise ValueError("not a valid segments message")
    return comps


def earliest(cols: Columns) -> float | None:
    """The earliest start of ``cols`` (None if it holds no segment): where stage 2
    marks a service's day rollups dirty from (``min`` made a float object a segment)."""
    starts = cols.starts
    fast = native.native
    if fast is not None and type(starts) is array:
        return fast.float_min(starts)  # type: ignore[no-any-return]
    return min(starts) if starts else None


def _float_kinds(col: array[float]) -> tuple[bool, bool]:
    """(any NaN, any infinity) in ``col``."""
    fast = native.native
    if fast is not None:
        return fast.float_kinds(col)  # type: ignore[no-any-return]
    return any(map(math.isnan, col)), any(map(math.isinf, col))


def _finite(col: array[float]) -> bool:
    return not any(_float_kinds(col))


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

