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
table is written again.

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
#: it the whole record is one message (a head and patches would only add keys).
INCREMENTAL_FROM = 1024
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
    """A ``Packer`` that notes the timeline of every column and keeps tag tables out of
    the header (each one a column after the body's, see ``write``)."""

    __slots__ = ("owners", "tagged")

    def __init__(self) -> None:
        super().__init__()
        self.owners: list[Timeline] = []
        self.tagged: list[Timeline] = []

    def add(self, col: Any, owner: Any = None) -> int:
        self.owners.append(owner)
        return super().add(col)

    def tag_table(self, meta: dict[str, Any], owner: Any) -> None:
        meta["gc"] = len(self.tagged)  # its column: the body's, then this many
        meta["gn"] = len(owner.tags) - 1
        self.tagged.append(owner)


def _metas(header: Any, out: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The timelines' parts of a record header, in the order their columns were packed
    (a dict keeps its order), each with the key it is under."""
    for k, v in header.items():
        if type(v) is dict:
            if "o" in v:
                out.append((k, v))
            else:
                _metas(v, out)
    return out


def _shape(metas: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, bool]]:
    """What decides which column is which: the timelines, in order, and which have tags."""
    return [(k, "gc" in m) for k, m in metas]


def parse_head(head: bytes, key: str) -> dict[str, Any]:
    try:
        meta = orjson.loads(memoryview(head)[len(HEAD):])
        if not isinstance(meta, dict) or not all(f in meta for f in ("r", "k", "p", "b")):
            raise ValueError("fields missing")
    except ValueError as exc:
        raise ValueError(f"tracker {key!r}: unreadable head of its patches ({exc})") from exc
    return meta


def tombstones(key: str, head: bytes) -> Writes:
    """Deletes for every patch a head names."""
    return [(patch_key(key, int(p[0])), None) for p in parse_head(head, key)["p"]]


def _patches(edits: list[tuple[int, int, Any]], limit: int) -> list[bytes]:
    """The patches of ``edits`` (column, cut at, bytes to append), each at most about
    ``limit`` bytes: a longer edit goes on in the next patch, which cuts its column
    where the one before ended."""
    out: list[bytes] = []
    todo: list[tuple[int, int, Any]] = []
    room = limit

    def emit() -> None:
        head = orjson.dumps([[c, s, len(d)] for c, s, d in todo])
        out.append(b"".join([PATCH, _LEN.pack(len(head)), head, *(d for _, _, d in todo)]))
        todo.clear()

    for col, start, data in edits:
        while len(data) > room and room > 0:
            todo.append((col, start, data[:room]))
            start += room
            data = data[room:]
            emit()
            room = limit
        todo.append((col, start, data))
        room -= len(data)
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
    bufs, owners, tagged = cols.bufs, cols.owners, cols.tagged
    nbody = len(bufs)
    metas = _metas(header, [])
    old_metas: list[tuple[str, dict[str, Any]]] = []
    edits: list[tuple[int, int, Any]] = []
    lens: list[int] = []
    patches: list[list[int]] = list(old["p"]) if old is not None else []
    base = int(old["b"]) if old is not None else 0
    rebase = True
    if old is not None and known:
        old_metas = _metas(old["r"], [])
        rebase = _shape(old_metas) != _shape(metas)
    if not rebase:
        assert old is not None
        prev = old["k"]
        for i, col in enumerate(bufs):
            size = col.itemsize
            n = len(col) * size
            start = min(owners[i]._low * size, prev[i])
            if start < prev[i] or n > start:
                edits.append((i, start, memoryview(col).cast("B")[start:]))
            lens.append(n)
        old_n = [m["gn"] for _, m in old_metas if "gc" in m]
        for j, tl in enumerate(tagged):
            i = nbody + j
            now_n = len(tl.tags) - 1
            if tl._low > 0 and old_n[j] <= now_n:
                if now_n > old_n[j]:
                    more = b"," + orjson.dumps(tl.tags[1 + old_n[j]:])[1:-1]
                    edits.append((i, prev[i], more))
                    lens.append(prev[i] + len(more))
                else:
                    lens.append(prev[i])
            else:
                table = orjson.dumps(tl.tags[1:])[:-1]
                edits.append((i, 0, table))
                lens.append(len(table))
        size_now = sum(len(d) for _, _, d in edits)
        limit = MAX_PATCHES - zlib.crc32(key.encode()) % (MAX_PATCHES // 2)
        rebase = (len(patches) - base + 1 >= limit
                  or sum(p[1] for p in patches[base:]) + size_now > REBASE_RATIO * sum(lens))
    gone: list[list[int]] = []
    if rebase:
        edits = [(i, 0, memoryview(col).cast("B")) for i, col in enumerate(bufs)]
        edits += [(nbody + j, 0, orjson.dumps(tl.tags[1:])[:-1]) for j, tl in enumerate(tagged)]
        lens = [len(d) for _, _, d in edits]
        gone, patches = patches, []
    number = max((int(p[0]) for p in (*gone, *patches)), default=0) + 1
    writes: Writes = []
    for raw in _patches(edits, chunk):
        patches.append([number, len(raw), zlib.crc32(raw)])
        writes.append((patch_key(key, number), raw))
        number += 1
    del edits  # the column views: an array that exports its buffer cannot grow
    if rebase:
        base = len(patches)
    head = HEAD + orjson.dumps({"r": header, "k": lens, "p": patches, "b": base})
    writes.append((key, head))
    writes += [(patch_key(key, int(p[0])), None) for p in gone]
    for tl in owners:
        tl._low = len(tl.ts)
    return head, writes


def assemble(key: str, head: bytes, data: Mapping[str, bytes],
             unpack: Callable[[dict[str, Any], memoryview], T]) -> T:
    """The tracker a head stands for, from the patches it names in ``data``."""
    meta = parse_head(head, key)
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
    tags = [m for _, m in _metas(header, []) if "gc" in m]
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
