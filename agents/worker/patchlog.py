"""Trackers stored as a head and a log of patches, so a checkpoint writes what changed.

Written whole at every checkpoint, a service's record carries its history and a copy of
every component history it reads again and again (late in a storm, 46-168x the bytes of
the events). A tracker whose columns hold at least ``INCREMENTAL_FROM`` bytes is stored
instead as:

- **patches**, each under a key of its own (``patch_key``): per column it edits, where to
  cut the column and the bytes to append from there. In order, a patch holds the points
  added since the last checkpoint; a late correction, a compaction or a prune makes it
  cut the column at the first point it touched.
- a **head** under the tracker's key: the tracker's record header (streams/record.py;
  each timeline's offset into the body its columns join to), the columns' lengths, and
  the patches that build them, in order, each with its size and CRC-32.

What changed is known, not searched for: every edit of a timeline other than an append
lowers ``Timeline._low`` to the first index it touched, and a write sets it to the
length again (``write``), so each column is sent from ``_low`` on. A tag table (the
components blamed, per distinct set: a service's can outweigh its columns) is a column
of its own, its JSON without the closing bracket, so the tags a checkpoint added are an
append; a renumbering (``Timeline.compact_tags``, at a prune) sets ``_low`` to 0 and the
table is written again. The watermarks count from the head the object was read from or
last written as: the table keeps that head with the decoded object (``TrackerTable``'s
cache), so nothing is kept per tracker beyond what the store holds. A write finding
another head (a rebalance, a new object), or timelines changed in number or tag columns
(the head's shape "l"; a tracker's timelines are only ever added, after those of their
kind), writes a new base.

Crash order: a checkpoint writes its patches, then the head naming them, then tombstones
for patches no head names any more (after a new base). One partition keeps that order,
so a recovery stopped anywhere finds the old head with all its patches or the new one
with all of its. A patch whose head was lost in a crash is overwritten by the next one
(the same number), or stays unnamed in the compacted topic.

A new base (every column whole, the old patches deleted) is written when the patches
after the base would outweigh the columns, or number ``MAX_PATCHES`` (less by up to
half, varied by key, so trackers that grew together do not rebase together): a recovery
reads at most about twice the history. A patch larger than the table's chunk size is cut
into several (Kafka refuses messages over ``max.message.bytes``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import orjson

from streams import record
from streams.timeline import Timeline

T = TypeVar("T")

#: First bytes of a head, and of a patch (a record starts with \x01, parts with \x00).
HEAD = b"\x02slawatch-inc3\x00"
PATCH = b"\x03slawatch-patch\x00"
#: A tracker whose columns hold at least this many bytes is stored incrementally; below
#: it the whole record is one message. A head and a patch cost ~7 us more of Python
#: than a whole record (2026-12-06); below ~4 KiB the bytes they save cost less than
#: that to send (fan-out 5 in ``bench/writes.py``: from 1 KiB 1,540 -> 294 MB with 12%
#: more flush CPU, from 4 KiB -> 367 MB with 5% more; services of 1 stay whole).
INCREMENTAL_FROM = 4096
#: Rebase when the patches after the base would hold more than this many times the
#: columns' bytes, or number more than ``MAX_PATCHES``.
REBASE_RATIO = 1.0
MAX_PATCHES = 16
_LEN = struct.Struct("<I")

Writes = list[tuple[str, bytes | None]]


def patch_key(key: str, number: int) -> str:
    # \x1f cannot occur in a component id (see state._part_key); "p" tells it from a part.
    return f"{key}\x1fp{number}"


class Columns(record.Packer):
    """A ``Packer`` that notes which timeline each column is part of and keeps tag
    tables out of the header (each one a column after the body's, see ``write``)."""

    __slots__ = ("groups", "shape", "tagged")

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[tuple[Timeline, int]] = []  # (timeline, its first column)
        self.tagged: list[tuple[Timeline, dict[str, Any]]] = []
        self.shape: list[int] = []  # the timelines with a tag column, by their number

    def timeline(self, owner: Any) -> None:
        self.groups.append((owner, len(self.bufs)))

    def tag_table(self, meta: dict[str, Any], owner: Any) -> None:
        meta["gc"] = len(self.tagged)  # its column: the body's, then this many
        meta["gn"] = len(owner.tags) - 1
        self.tagged.append((owner, meta))
        self.shape.append(len(self.groups) - 1)

    def whole(self, header: dict[str, Any]) -> bytes:
        """The whole record (streams/record.py) of what was packed, tag tables in the
        header as ``Packer`` has them."""
        for owner, meta in self.tagged:
            del meta["gc"], meta["gn"]
            super().tag_table(meta, owner)
        return record.join(header, self.bufs)


def _head(meta: dict[str, Any], header: dict[str, Any]) -> bytes:
    """A head: what a write needs of the last one first (``meta``: the columns' lengths
    "k", the patches "p" (number, size, CRC-32), how many of them are the base "b", the
    bytes of those after it "d", the shape "l", the tag tables' sizes "gn"), then the
    record header "r"."""
    m = orjson.dumps(meta)
    return b"".join([HEAD, _LEN.pack(len(m)), m, orjson.dumps(header)])


_META = frozenset(("k", "p", "b", "d", "l", "gn"))


def parse_head(head: bytes, key: str, whole: bool = False) -> dict[str, Any]:
    """A head's ``meta``, and with ``whole`` the record header under "r" too."""
    try:
        at = len(HEAD) + _LEN.size
        (n,) = _LEN.unpack_from(head, len(HEAD))
        meta = orjson.loads(memoryview(head)[at:at + n])
        if not isinstance(meta, dict) or len(meta.keys() & _META) != len(_META):
            raise ValueError("fields missing")
        if whole:
            meta["r"] = orjson.loads(memoryview(head)[at + n:])
            if not isinstance(meta["r"], dict):
                raise ValueError("its record header is not an object")
    except (ValueError, struct.error) as exc:
        raise ValueError(f"tracker {key!r}: unreadable head of its patches ({exc})") from exc
    return meta


def tombstones(key: str, head: bytes) -> Writes:
    """Deletes for every patch a head names."""
    return [(patch_key(key, int(p[0])), None) for p in parse_head(head, key)["p"]]


def _patches(edits: list[tuple[int, int, Any, int]], limit: int) -> list[bytes]:
    """The patches of ``edits`` (column, cut at, bytes or an array to append, its size in
    bytes), each at most about ``limit`` bytes: a longer edit goes on in the next patch,
    which cuts its column where the one before ended."""
    if sum(e[3] for e in edits) <= limit:  # the usual case: one patch
        head = orjson.dumps([[c, s, n] for c, s, _, n in edits])
        return [b"".join([PATCH, _LEN.pack(len(head)), head, *(e[2] for e in edits)])]
    out: list[bytes] = []
    todo: list[tuple[int, int, Any, int]] = []
    room = limit

    def emit() -> None:
        head = orjson.dumps([[c, s, n] for c, s, _, n in todo])
        out.append(b"".join([PATCH, _LEN.pack(len(head)), head, *(d for _, _, d, _ in todo)]))
        todo.clear()

    for col, start, data, size in edits:
        if size > room:
            data = memoryview(data).cast("B")  # released with the last slice, below
            while size > room:
                todo.append((col, start, data[:room], room))
                start += room
                data = data[room:]
                size -= room
                emit()
                room = limit
        todo.append((col, start, data, size))
        room -= size
        if room <= 0:
            emit()
            room = limit
    if todo or not out:
        emit()
    return out


def apply_patch(cols: list[bytearray], raw: bytes, what: str) -> None:
    at = len(PATCH)
    if not raw.startswith(PATCH) or len(raw) < at + _LEN.size:
        raise ValueError(f"{what}: not a patch")
    (n,) = _LEN.unpack_from(raw, at)
    at += _LEN.size
    edits = orjson.loads(memoryview(raw)[at:at + n])
    at += n
    view = memoryview(raw)
    for col, start, size in edits:
        while len(cols) <= col:
            cols.append(bytearray())
        if start > len(cols[col]) or at + size > len(raw):
            raise ValueError(f"{what}: an edit of column {col} does not fit")
        del cols[col][start:]
        cols[col] += view[at:at + size]
        at += size


def write(key: str, header: dict[str, Any], cols: Columns, stored: bytes | None,
          known: bool, chunk: int) -> tuple[bytes, Writes]:
    """The head and the writes (patches, head, tombstones) that store a tracker packed
    into ``cols`` (its record ``header``), given the head ``stored`` under ``key`` (None
    if none): with ``known``, the head this process last wrote or read for this very
    object, so its timelines' ``_low`` count from it; else a new base. Sets ``_low`` of
    every timeline written to its length."""
    old = parse_head(stored, key) if stored is not None else None
    bufs, groups, tagged = cols.bufs, cols.groups, cols.tagged
    nbody = len(bufs)
    # Which column is which: how many timelines and columns, and which timelines have
    # tags (a tracker's timelines are only ever added, at the end of their kind).
    shape = [len(groups), nbody, *cols.shape]
    edits: list[tuple[int, int, Any, int]] = []  # column, cut at, to append, its bytes
    lens: list[int] = []
    patches: list[list[int]] = list(old["p"]) if old is not None else []
    base = int(old["b"]) if old is not None else 0
    rebase = old is None or not known or old.get("l") != shape
    if not rebase:
        assert old is not None
        prev = old["k"]
        ends = [first for _, first in groups[1:]]
        ends.append(nbody)
        for (tl, first), end in zip(groups, ends, strict=True):
            low = tl._low
            if low == len(tl.ts) and 8 * low == prev[first]:  # as written
                lens += prev[first:end]
                continue
            for i in range(first, end):
                col = bufs[i]
                size = col.itemsize
                n = len(col) * size
                if low * size < prev[i]:
                    edits.append((i, low * size, col[low:], n - low * size))
                elif n > prev[i]:
                    edits.append((i, prev[i], col[prev[i] // size:], n - prev[i]))
                lens.append(n)
        old_n = old["gn"]
        for j, (tl, meta) in enumerate(tagged):
            i = nbody + j
            now_n = meta["gn"]
            if tl._low > 0 and old_n[j] <= now_n:
                if now_n > old_n[j]:
                    more = b"," + orjson.dumps(tl.tags[1 + old_n[j]:])[1:-1]
                    edits.append((i, prev[i], more, len(more)))
                    lens.append(prev[i] + len(more))
                else:
                    lens.append(prev[i])
            else:
                table = orjson.dumps(tl.tags[1:])[:-1]
                edits.append((i, 0, table, len(table)))
                lens.append(len(table))
        size_now = sum(e[3] for e in edits)
        limit = MAX_PATCHES - zlib.crc32(key.encode()) % (MAX_PATCHES // 2)
        rebase = (len(patches) - base + 1 >= limit
                  or old["d"] + size_now > REBASE_RATIO * sum(lens))
    gone: list[list[int]] = []
    if rebase:
        edits = [(i, 0, col, len(col) * col.itemsize) for i, col in enumerate(bufs)]
        for j, (tl, _) in enumerate(tagged):
            table = orjson.dumps(tl.tags[1:])[:-1]
            edits.append((nbody + j, 0, table, len(table)))
        lens = [e[3] for e in edits]
        gone, patches = patches, []
    last = patches or gone  # numbers only grow, in the order the head names them
    number = int(last[-1][0]) + 1 if last else 1
    writes: Writes = []
    for raw in _patches(edits, chunk):
        patches.append([number, len(raw), zlib.crc32(raw)])
        writes.append((patch_key(key, number), raw))
        number += 1
    if rebase:
        base = len(patches)
    head = _head({"k": lens, "p": patches, "b": base, "d": sum(p[1] for p in patches[base:]),
                  "l": shape, "gn": [m["gn"] for _, m in tagged]}, header)
    writes.append((key, head))
    writes += [(patch_key(key, int(p[0])), None) for p in gone]
    for tl, _ in groups:
        tl._low = len(tl.ts)
    return head, writes


def _tag_metas(header: dict[str, Any], out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timelines' parts of a header that name a tag column, in order."""
    for v in header.values():
        if type(v) is dict:
            if "o" in v:
                if "gc" in v:
                    out.append(v)
            else:
                _tag_metas(v, out)
    return out


def assemble(key: str, head: bytes, data: Mapping[str, bytes],
             unpack: Callable[[dict[str, Any], memoryview], T]) -> T:
    """The tracker a head stands for, from the patches it names in ``data``."""
    meta = parse_head(head, key, whole=True)
    cols: list[bytearray] = []
    for number, size, crc in meta["p"]:
        raw = data.get(patch_key(key, number))
        if raw is None:
            raise ValueError(f"tracker {key!r}: patch {number}, named by its head, is "
                             "missing from the table")
        if len(raw) != size or zlib.crc32(raw) != crc:
            raise ValueError(f"tracker {key!r}: patch {number} does not match its head")
        apply_patch(cols, raw, f"tracker {key!r}: patch {number}")
    lengths = meta["k"]
    del cols[len(lengths):]
    while len(cols) < len(lengths):
        cols.append(bytearray())
    if [len(c) for c in cols] != lengths:
        raise ValueError(f"tracker {key!r}: its patches do not build the columns its head "
                         "describes")
    header = meta["r"]
    tags = _tag_metas(header, [])
    nbody = len(lengths) - len(tags)
    for m in tags:
        col, n = int(m.pop("gc")), int(m.pop("gn"))
        if not 0 <= nbody + col < len(cols):
            raise ValueError(f"tracker {key!r}: tag table column {col} does not exist")
        m["g"] = orjson.loads(bytes(cols[nbody + col]) + b"]")
        if len(m["g"]) != n:
            raise ValueError(f"tracker {key!r}: a tag table holds {len(m['g'])} tags, its "
                             f"head says {n}")
    return unpack(header, memoryview(b"".join(cols[:nbody])))
