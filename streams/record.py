"""Checkpoint records of trackers: a small JSON header and the timelines' columns as bytes.

A tracker's history is stored as its arrays' bytes, not as JSON numbers: 8 bytes a time
and 1 a state instead of ~20 characters, and the record is written in one pass
(``bytes.join`` over the arrays' buffers, no list of every point first) and read back
with ``array.frombytes``. Layout::

    MAGIC, u32 little-endian length of the header, the header (orjson), the columns

The header is the tracker's ``to_record`` dict; each timeline in it names its columns'
offset into the body (``Timeline.pack``). Columns are little-endian whatever the
machine. A record that starts with ``{`` is the JSON of an older release
(``to_obj``): the decoders in agents/worker/state.py still read it, and the next write
stores the tracker in this format.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any

import orjson

#: First bytes of a record (a JSON value never starts with \x01; a value stored in parts
#: starts with \x00).
MAGIC = b"\x01slawatch-rec1\x00"
_LEN = struct.Struct("<I")
_BIG = sys.byteorder == "big"


class Packer:
    """Collects the column buffers of one record and their offsets into its body."""

    __slots__ = ("bufs", "size")

    def __init__(self) -> None:
        self.bufs: list[Any] = []
        self.size = 0

    def timeline(self, owner: Any) -> None:
        """The columns added next are ``owner``'s (a timeline): for packers that write
        columns apart (agents/worker/patchlog.py); this one only joins them."""

    def add(self, col: array[Any]) -> int:
        """Append a column's bytes; returns where they start in the body."""
        at = self.size
        if _BIG and col.itemsize > 1:  # pragma: no cover - little-endian machines here
            col = array(col.typecode, col)
            col.byteswap()
        self.bufs.append(col)  # bytes.join reads its buffer: no copy until then
        self.size += len(col) * col.itemsize
        return at

    def add_timeline(self, owner: Any) -> int:
        """``timeline(owner)``, then its times' and states' columns (``owner.ts``,
        ``owner.st``); returns where the times start. One call for what a checkpoint
        does for every timeline it writes (a service's record holds one per component
        it reads)."""
        self.timeline(owner)
        ts = owner.ts
        at = self.size
        if _BIG:  # pragma: no cover - little-endian machines here
            self.add(ts)
            self.add(owner.st)
            return at
        self.bufs += (ts, owner.st)
        self.size = at + 9 * len(ts)
        return at

    def tag_table(self, meta: dict[str, Any], owner: Any) -> None:
        """Store a timeline's tag table (``owner.tags``, without ``NO_TAG``) in ``meta``:
        its tuples as they are (orjson writes a tuple as the array a list would be; a
        list of each was most of a small tracker's write in a storm)."""
        meta["g"] = owner.tags[1:]

    def encode(self, header: dict[str, Any]) -> bytes:
        return join(header, self.bufs)


def join(header: dict[str, Any], bufs: list[Any]) -> bytes:
    """The record of ``header`` and the column buffers a ``Packer`` collected."""
    head = orjson.dumps(header)
    return b"".join([MAGIC, _LEN.pack(len(head)), head, *bufs])


def is_record(raw: bytes) -> bool:
    return raw.startswith(MAGIC)


def decode(raw: bytes, what: str) -> tuple[dict[str, Any], memoryview]:
    """The header and the body of a record; ``what`` names it in errors."""
    if not raw.startswith(MAGIC):
        raise ValueError(f"{what}: not a slawatch checkpoint record (starts {raw[:16]!r})")
    at = len(MAGIC)
    if len(raw) < at + _LEN.size:
        raise ValueError(f"{what}: checkpoint record truncated in its header")
    (n,) = _LEN.unpack_from(raw, at)
    at += _LEN.size
    if len(raw) < at + n:
        raise ValueError(f"{what}: checkpoint record truncated in its header")
    header = orjson.loads(memoryview(raw)[at:at + n])
    if not isinstance(header, dict):
        raise ValueError(f"{what}: checkpoint record header is not an object")
    return header, memoryview(raw)[at + n:]


def column(body: memoryview, typecode: str, at: int, n: int, what: str) -> array[Any]:
    """``n`` items of ``typecode`` from ``body`` at byte ``at``."""
    col: array[Any] = array(typecode)
    end = at + n * col.itemsize
    if at < 0 or end > len(body):
        raise ValueError(f"{what}: checkpoint record body too short for its columns")
    col.frombytes(body[at:end])
    if _BIG and col.itemsize > 1:  # pragma: no cover
        col.byteswap()
    return col
