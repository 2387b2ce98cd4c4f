"""Decoded trackers over Faust tables of raw bytes, and per-partition counters.

Table values are kept as the engine's serialized bytes (trackers: the binary records of
``streams/record.py``; counters: orjson) so the changelog and RocksDB hold a stable,
documented format, but decoding a tracker for
every event would dominate the cost of the pipeline. ``TrackerTable`` therefore keeps a
decoded object next to the exact bytes it came from: as long as the table still holds
those bytes the object is the truth, and when recovery or a standby update replaced
them it is decoded again. Changes are marked dirty and written once per batch.

Table writes must carry the partition of the message they belong to (the changelog
record goes to that partition, and RocksDB picks its per-partition database by it), so
every dirty key remembers its partition and ``flush`` writes under that partition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import weakref
import zlib
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import orjson

from agents.worker import patchlog
from streams import native, record
from streams.component import OUTCOMES, ComponentTracker
from streams.service import ServiceTracker
from streams.unmapped import SpaceSaving, UnmappedTracker

T = TypeVar("T")
_Tr = TypeVar("_Tr", ComponentTracker, ServiceTracker)


def _entry(raw: bytes, obj: T) -> tuple[bytes, T]:
    """A cache entry ``(stored bytes, object)``, off the cyclic collector's lists.

    CPython keeps a tuple that holds a tracker on them (a tracker is a GC type), and a
    checkpoint makes one per changed key: at 20,000 components the young collection
    after each fetch walked tens of thousands of them, then a middle-aged one again.
    No cycle can pass through an entry: a table's objects never refer to the table or
    its cache.
    """
    entry = (raw, obj)
    fast = native.native
    if fast is not None:
        fast.untrack(entry)
    return entry


#: Components table key of a partition's counters. '#' cannot occur in a component id
#: (CONTRACT §1), so these keys never collide with a tracker.
STATS_PREFIX = "#stats/"


def stats_key(partition: int) -> str:
    return f"{STATS_PREFIX}{partition}"


class PartitionContext:
    """Stands in for Faust's current event while a table is written outside an agent.

    Faust's stores take the partition of a write from ``current_event().message``
    (RocksDB keeps one database per partition); batch handlers have no Event, only
    the partition, so this object carries just that.
    """

    __slots__ = ("__weakref__", "message")

    class _Message:
        __slots__ = ("partition",)

        def __init__(self, partition: int) -> None:
            self.partition = partition

    def __init__(self, partition: int) -> None:
        self.message = self._Message(partition)


_contexts: dict[int, PartitionContext] = {}


@contextlib.contextmanager
def partition_context(partition: int) -> Iterator[None]:
    """Make table I/O in this block belong to ``partition``."""
    from faust.streams import _current_event

    ctx = _contexts.get(partition)
    if ctx is None:
        ctx = _contexts[partition] = PartitionContext(partition)
    token = _current_event.set(weakref.ref(ctx))  # type: ignore[arg-type]  # duck-typed
    try:
        yield
    finally:
        _current_event.reset(token)


class PartitionStats:
    """Outcome counts and unmapped components of one table partition, and what they
    cover.

    Kept in the components table so the counters survive restarts and move with their
    partition: the sum over the workers' owned partitions is the whole count, each
    message counted once.

    ``marks`` holds, per origin (input topic and partition, ``routing.mark_key``), the
    highest input offset counted here (see ``agents/routing.py``): after a crash Kafka
    redelivers what was not committed, and a forwarder may send a record twice; a
    record at or below its mark is classified again (re-applying is harmless and
    re-sends the segment a crash may have lost) but not counted or dead-lettered again.
    ``dlq`` is the DLQ mark: an offset of this partition's DLQ partition before which
    every record this partition dead-lettered is counted here; the ones after it may
    have been sent by a predecessor that crashed before its next checkpoint, so the
    worker that takes the partition reads them before it dead-letters anything
    (``agents/worker/deadletters.py``). This record is written before the trackers of
    its batch, into the same changelog partition, so if it survived a crash the counts
    it holds match what was applied.
    """

    __slots__ = ("counts", "dlq", "marks", "unmapped")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.marks: dict[str, int] = {}
        self.dlq = 0
        self.unmapped = UnmappedTracker()

    def to_bytes(self) -> bytes:
        u = self.unmapped
        # ADAPTER (engine has no UnmappedTracker persistence yet): the exact set while
        # it is small, the HyperLogLog registers once it overflowed.
        exact = u._exact
        unmapped: dict[str, Any] = (
            {"e": sorted(exact)} if exact is not None
            else {"r": base64.b64encode(bytes(u._registers)).decode()}
        )
        if u.top.n:
            unmapped["t"] = u.top.to_obj()
            unmapped["tn"] = u.top.n
        return compact_value(orjson.dumps({"c": self.counts, "m": self.marks, "d": self.dlq,
                                      "u": unmapped}))

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionStats:
        obj = orjson.loads(raw)
        stats = cls()
        stats.counts.update({k: int(v) for k, v in obj["c"].items()})
        stats.marks = {str(k): int(v) for k, v in obj.get("m", {}).items()}
        stats.dlq = int(obj.get("d", 0))
        # Before marks: offset ranges per topic, of this partition's number.
        for topic, ranges in obj.get("o", {}).items():
            last = ranges if isinstance(ranges, int) else max((int(b) for _, b in ranges),
                                                              default=-1)
            stats.marks.setdefault(f"{topic}/?", last)
        u = obj["u"]
        if "e" in u:
            stats.unmapped._exact = set(u["e"])
        else:
            stats.unmapped._exact = None
            stats.unmapped._registers = bytearray(base64.b64decode(u["r"]))
        if "t" in u:
            stats.unmapped.top = SpaceSaving.from_obj(u["t"], int(u.get("tn", 0)))
        return stats

    def adopt_legacy_marks(self, partition: int) -> None:
        """Name the marks of a record written before marks existed (it held ranges of
        its own partition's offsets, per topic)."""
        for key in [k for k in self.marks if k.endswith("/?")]:
            self.marks.setdefault(f"{key[:-2]}/{partition}", self.marks.pop(key))


#: Values at least this long are kept as orjson made them (see ``compact_value``).
COMPACT_BELOW = 32 * 1024


def compact_value(raw: bytes) -> bytes:
    """``raw`` in a buffer of its own size, if it is short.

    orjson builds its output in a buffer of several KiB and shrinks it in place; the
    allocator keeps the whole block, so each small value kept from ``orjson.dumps``
    held ~4-8 KiB of RSS (100,000 component trackers: 400 MiB for 10 MiB of JSON).
    Measured on 20 MB of values: 200 B values held 115x their size, 2 KB 8.6x, 8 KB
    2.8x, 30 KB 1.2x, 100 KB 1.1x. The copy of a long value buys little and was 3% of
    the worker's time in a storm, whose trackers serialize to tens of KiB.
    """
    return raw if len(raw) >= COMPACT_BELOW else bytes(memoryview(raw))


# Trackers are stored as binary records (streams/record.py: a JSON header and the
# timelines' columns as bytes, joined in one pass into a value of exactly its size).
# A value that starts with "{" is a tracker of an older release, stored as the JSON of
# ``to_obj``: it is read as such, and rewritten in the new format when next changed.


def _encode(tracker: ComponentTracker | ServiceTracker) -> bytes:
    out = record.Packer()
    return out.encode(tracker.to_record(out))


def _decode(cls: type[_Tr], raw: bytes, what: str) -> _Tr:
    if raw[:1] == b"{":
        return cls.from_obj(orjson.loads(raw))
    header, body = record.decode(raw, what)
    return cls.from_record(header, body)


def encode_component(tracker: ComponentTracker) -> bytes:
    return _encode(tracker)


def decode_component(raw: bytes) -> ComponentTracker:
    return _decode(ComponentTracker, raw, "components table value")


def encode_service(tracker: ServiceTracker) -> bytes:
    return _encode(tracker)


def decode_service(raw: bytes) -> ServiceTracker:
    return _decode(ServiceTracker, raw, "services table value")


def encode_stats(stats: PartitionStats) -> bytes:
    return stats.to_bytes()


#: A table value larger than this is stored in parts (Kafka refuses messages over
#: ``max.message.bytes``, 1 MB by default; a service with a long, busy history can
#: serialize to more).
CHUNK_SIZE = 512 * 1024
#: First bytes of the head record of a value stored in parts (a JSON value never
#: starts with a NUL).
CHUNKED = b"\x00slawatch-parts\x00"


def _part_key(key: str, version: int, index: int) -> str:
    # \x1f cannot occur in a component id, and a service name with a control
    # character in it would be odd; the parts are never read as trackers.
    return f"{key}\x1f{version}.{index}"


#: ``send(topic, key, value, partition)``: hands a record to the producer and returns
#: the future of its delivery (``await``-ing it waits only for room in the producer).
Send = Callable[[str, bytes, bytes | None, int], Awaitable["asyncio.Future[Any]"]]
#: ``send_many(topic, partition, records)``: hands ``(key, value)`` records to the
#: producer, in this order, all to ``partition``; returns ``(future, count)`` per run of
#: ``count`` records delivered together (its metadata names the run's first record).
SendMany = Callable[[str, int, list[tuple[bytes, bytes | None]]],
                    Awaitable[list[tuple["asyncio.Future[Any]", int]]]]


class TrackerTable(Generic[T]):
    """A Faust table of raw bytes seen as decoded objects, written once per batch."""

    def __init__(
        self, table: Any, decode: Callable[[bytes], T], encode: Callable[[T], bytes],
        pack: Callable[[T, record.Packer], dict[str, Any]] | None = None,
        unpack: Callable[[dict[str, Any], memoryview], T] | None = None,
        small: Callable[[list[T], int], list[bytes | None]] | None = None,
    ) -> None:
        """``pack``/``unpack`` (``to_record``/``from_record`` of a tracker: a record
        header and its columns, see streams/record.py) make the table store values of
        at least ``incremental_from`` bytes as a head and patches (agents/worker/
        patchlog.py). ``small(objs, limit)``: per object, the whole record ``pack`` makes
        of it when its columns are under ``limit`` bytes, made without a packer (None:
        not that simple), for tables of many small objects
        (``ComponentTracker.small_records``)."""
        self.table = table
        self._decode = decode
        self._encode = encode
        self._pack = pack
        self._unpack = unpack
        self._small = small if pack is not None else None
        self.incremental_from = patchlog.INCREMENTAL_FROM
        self._cache: dict[str, tuple[bytes, T]] = {}
        self._dirty: dict[str, int] = {}  # key -> its partition
        self._chunks: dict[str, tuple[int, int]] = {}  # key -> (version, parts) stored
        self.chunk_size = CHUNK_SIZE
        # Store writes by ``flush`` per partition, and ``forget`` calls (see ``versions``).
        self._versions: dict[int, int] = {}
        self._generation = 0
        # ``stored_lookup()``'s lookup of the table's store (made when first read).
        self._store: Any = None
        self._store_get: Callable[[str], bytes | None] = _nothing_stored

    def get(self, key: str) -> T | None:
        """The current object for ``key``, or None if the table has none.

        Outside a batch (in the collector) there is no current event; the store then
        finds the key's partition itself.
        """
        if key in self._dirty:
            return self._cache[key][1]
        raw = self._lookup()(key)
        if raw is None:
            self._cache.pop(key, None)
            return None
        hit = self._cache.get(key)
        if hit is not None and (hit[0] is raw or hit[0] == raw):
            return hit[1]
        if raw.startswith(patchlog.HEAD):
            if self._unpack is None:
                raise ValueError(f"table value {key!r}: stored in patches, but this table "
                                 "has no record decoder")
            # Its timelines' ``_low`` are their lengths: as this head stores them.
            obj = patchlog.assemble(key, raw, self.table.data, self._unpack)
        else:
            obj = self._decode(self._join(key, raw) if raw.startswith(CHUNKED) else raw)
        self._cache[key] = _entry(raw, obj)
        return obj

    def get_many(self, keys: Iterable[str], touch: int | None = None) -> dict[str, T]:
        """``{key: get(key)}`` of the keys the table has (a new dict). Stage 1 asks it
        of every component of a slice (at 20,000 components nearly one a record), most
        of them changed since the last checkpoint: those are read from the cache in one
        pass. With ``touch``, also ``touch(key, touch)`` of each key found (stage 1
        changes or looks at every tracker it gets)."""
        dirty, cache = self._dirty, self._cache
        wanted = keys if isinstance(keys, (set, frozenset)) else set(keys)
        fast = native.native
        store = self._store_dict() if fast is not None else None
        if fast is not None and store is not None and type(cache) is dict:
            # The cache hits in one C loop (the loop below is its twin); the others
            # as ``get`` finds them.
            found: dict[str, T]
            found, rest = fast.cached_many(wanted, dirty, store, cache, touch)
            if rest:
                get = self.get
                for key in rest:
                    obj = get(key)
                    if obj is not None:
                        found[key] = obj
                        if touch is not None:
                            dirty[key] = touch
            return found
        changed = dirty.keys() & wanted
        out = {key: cache[key][1] for key in changed}
        if len(changed) < len(wanted):
            get = self.get
            for key in wanted - changed:
                obj = get(key)
                if obj is not None:
                    out[key] = obj
        if touch is not None:
            self.touch_many(out, touch)
        return out

    def get_stored(self, key: str) -> tuple[T | None, bytes | None]:
        """``get(key)`` and the stored bytes the object is exactly the decoding of.

        The bytes are None while the object has changes not yet written (it may still
        be changing): only an object with bytes can be known unchanged since, by
        comparing them with what a later call returns.
        """
        obj = self.get(key)
        if obj is None or key in self._dirty:
            return obj, None
        return obj, self._cache[key][0]

    def get_stored_many(self, keys: list[str]) -> list[tuple[T | None, bytes | None]]:
        """``get_stored`` of each key (one loop: a scrape after a backlog asks it of
        every component)."""
        dirty, cache = self._dirty, self._cache
        fast = native.native
        store = self._store_dict()
        if fast is not None and store is not None:
            # The hits in one C loop (this loop's twin); the others as get_stored does.
            got: list[tuple[T | None, bytes | None] | None] = fast.stored_hits(
                keys, dirty, store, cache)
            return [self.get_stored(key) if hit is None else hit
                    for key, hit in zip(keys, got, strict=True)]
        stored = self._lookup()
        out: list[tuple[T | None, bytes | None]] = []
        add = out.append
        for key in keys:
            if key not in dirty:
                raw = stored(key)
                hit = cache.get(key)
                if raw is not None and hit is not None and (hit[0] is raw or hit[0] == raw):
                    add((hit[1], hit[0]))
                    continue
            add(self.get_stored(key))
        return out

    def _store_dict(self) -> dict[str, bytes] | None:
        """The store's dict when lookups in it are plain dict lookups (Faust's memory
        store keeps one), else None."""
        store = self.table.data
        inner = getattr(store, "data", None)
        if type(inner) is dict:
            return inner
        if isinstance(store, dict) and type(store).get is dict.get:
            return store
        return None

    def _lookup(self) -> Callable[[str], bytes | None]:
        """``stored_lookup()``'s lookup, made again only when the table's store changes.
        Not through the store's Mapping.get and __getitem__ (two Python calls for a dict
        lookup): stage 1 looks up every component of a slice, and where each component
        has only a few events per checkpoint most lookups read the store."""
        store = self.table.data
        if store is not self._store:
            self._store, self._store_get = store, self.stored_lookup()[0]
        return self._store_get

    def stored_lookup(self) -> tuple[Callable[[str], bytes | None], Container[str]]:
        """``(lookup, dirty)``: the bytes stored under a key (None if none), and the
        keys whose objects have changes not yet written. For readers that only need to
        know whether a key changed since they last saw its bytes (the collector)."""
        store = self.table.data
        inner = getattr(store, "data", None)  # Faust's memory store keeps a dict
        lookup = inner.get if type(inner) is dict else store.get
        return lookup, self._dirty

    def _join(self, key: str, head: bytes) -> bytes:
        """The value a chunked head stands for, from its parts (see ``flush``)."""
        meta = orjson.loads(head[len(CHUNKED):])
        version, n = int(meta["v"]), int(meta["n"])
        data = self.table.data
        parts = [data.get(_part_key(key, version, i)) for i in range(n)]
        if any(p is None for p in parts):
            raise ValueError(f"table value {key!r}: a part of version {version} is missing")
        full = b"".join(parts)
        if zlib.crc32(full) != meta["crc"]:
            raise ValueError(f"table value {key!r}: parts of version {version} do not match")
        self._chunks[key] = (version, n)
        return full

    def put(self, key: str, obj: T, partition: int) -> None:
        """Adopt a new object for ``key``; it is written at the next ``flush``."""
        hit = self._cache.get(key)
        # The bytes an object came from (or was last written as) stay with it: the
        # next write of a head and patches counts from them (see ``flush``).
        self._cache[key] = _entry(hit[0] if hit is not None and hit[1] is obj else b"", obj)
        self._dirty[key] = partition

    def touch(self, key: str, partition: int) -> None:
        """Mark an object returned by ``get`` as changed in place."""
        self._dirty[key] = partition

    def touch_many(self, keys: Iterable[str], partition: int) -> None:
        """``touch`` of each key."""
        self._dirty.update(dict.fromkeys(keys, partition))

    def touch_each(self, partitions: dict[str, int]) -> None:
        """``touch(key, partition)`` of each item of ``partitions``."""
        self._dirty.update(partitions)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    def dirty_keys(self) -> list[str]:
        """The keys the next ``flush`` writes."""
        return list(self._dirty)

    async def flush(
        self, send: Send, before_write: Callable[[str, T], None] | None = None,
        send_many: SendMany | None = None,
    ) -> list[Any]:
        """Write every dirty key once (store + changelog); returns the send futures.

        The changelog record goes straight to the producer rather than through
        ``table[key] = ...``: Faust's path queues one message per write in an unbounded
        buffer drained one per loop iteration, and drops the future, so the caller could
        not hold the input's commit until the write is on the broker. RocksDB's persisted
        offset (which lets a restart recover only the tail) is set, as Faust does, from
        the delivered record.

        The keys are written a partition at a time (one partition context each), and
        with ``send_many`` each partition's records go to the producer as record
        batches, in the order written; without it, one ``send`` per record.
        """
        dirty, self._dirty = self._dirty, {}
        if not dirty:
            return []
        by_partition: dict[int, list[str]] = {}
        for key, partition in dirty.items():
            keys = by_partition.get(partition)
            if keys is None:
                by_partition[partition] = [key]
            else:
                keys.append(key)
        table = self.table
        store = table.data
        versions = self._versions
        # First every store write, with no await in between: readers (the collector)
        # run between our awaits, and must find each key either dirty or stored.
        records: list[tuple[int, list[tuple[bytes, bytes | None]]]] = []
        for partition, keys in by_partition.items():
            # Store reads and writes belong to the key's partition (RocksDB keeps one
            # database per partition).
            with partition_context(partition):
                writes = self._write_partition(keys, before_write)
            versions[partition] = versions.get(partition, 0) + len(writes)
            records.append((partition, writes))
        topic = table.changelog_topic.get_topic_name()
        futures: list[Any] = []
        # The partitions side by side: a request to the broker carries one batch per
        # partition, and a partition's next batch waits until its last one left, so one
        # partition after the other took a round trip per batch.
        sent = await asyncio.gather(*(
            send_many(topic, p, recs) if send_many is not None else _one_by_one(send, topic, p, recs)
            for p, recs in records))
        for runs in sent:
            for fut, _ in runs:
                futures.append(fut)
            if runs:
                fut, count = runs[-1]
                fut.add_done_callback(_persist_offset(store, count - 1))
        return futures

    def _write_partition(self, keys: list[str], before_write: Callable[[str, T], None] | None
                         ) -> list[tuple[bytes, bytes | None]]:
        """Write ``keys`` (dirty, of one partition) to the store; the changelog records,
        in order, their keys encoded (a value None: a tombstone)."""
        cache, encode, store = self._cache, self._encode, self.table.data
        chunk = self.chunk_size
        lookup = self.stored_lookup()[0]
        out: list[tuple[bytes, bytes | None]] = []
        small, limit, chunks = self._small, self.incremental_from, self._chunks
        inc_head = patchlog.HEAD
        # Faust's memory store is a dict behind a Python __setitem__: written directly.
        store_dict = self._store_dict()
        put = getattr(store_dict, "__setitem__", None) or store.__setitem__
        objs = [cache[key][1] for key in keys]
        if before_write is not None:
            for key, obj in zip(keys, objs, strict=True):
                before_write(key, obj)
        # Each object's whole record if it is small, all in one call (a components
        # checkpoint in a storm writes thousands, each of a few points).
        wholes: Sequence[bytes | None] = (small(objs, limit) if small is not None
                                           else [None] * len(keys))
        fast = native.native if small is not None else None
        # A dict (or a subclass) whose reads and writes are dict's own: the C path
        # stores into it as ``put`` does (the cache and the chunks are this table's own
        # dicts).
        plain_store = store_dict is not None and type(store_dict).__setitem__ is dict.__setitem__
        total = len(keys)
        at = 0
        while at < total:
            if fast is not None and plain_store and type(wholes) is list:
                # The small path in C up to the next key that takes the one below (the
                # same steps, in the same order).
                at = fast.small_writes(keys, objs, wholes, at, chunks, store_dict, cache, chunk,
                                       inc_head, out)
                if at >= total:
                    break
            key, obj, whole = keys[at], objs[at], wholes[at]
            at += 1
            if whole is not None and len(whole) <= chunk and key not in chunks:
                # A small object stored whole (or not yet): written whole, as below.
                before = lookup(key)
                if before is None or not before.startswith(inc_head):
                    put(key, whole)
                    cache[key] = _entry(whole, obj)
                    out.append((key.encode(), whole))
                    continue
            old = self._chunks.pop(key, None)
            writes: list[tuple[str, bytes | None]] = []
            raw: bytes | None = None
            if self._pack is not None:
                before = lookup(key)
                inc = before if before is not None and before.startswith(patchlog.HEAD) else None
                cols = patchlog.Columns()
                header = self._pack(obj, cols)
                if cols.size >= self.incremental_from:
                    # ``known``: the stored head is the one this object was read from or
                    # last written as, so its timelines' ``_low`` count from it.
                    known = inc is not None and (inc is cache[key][0] or inc == cache[key][0])
                    stored, writes = patchlog.write(key, header, cols, inc, known, chunk)
                else:
                    raw = cols.whole(header)
                    if inc is not None:
                        # Small again (pruned): whole, then tombstones for its patches.
                        writes = [(key, raw), *patchlog.tombstones(key, inc)]
                        stored, raw = raw, None
                del cols
            else:
                raw = encode(obj)
            if raw is None:
                pass
            elif len(raw) > chunk:
                # Larger than a Kafka message may be (1 MB by default): parts of a new
                # version first, then the head naming them, then tombstones for the old
                # version's parts. Same partition, so the log keeps this order and a
                # head never names parts that are not before it.
                version = (old[0] + 1) if old else 1
                n = -(-len(raw) // chunk)
                writes += [(_part_key(key, version, i), raw[i * chunk:(i + 1) * chunk])
                           for i in range(n)]
                head = CHUNKED + orjson.dumps({"v": version, "n": n, "crc": zlib.crc32(raw)})
                writes.append((key, head))
                self._chunks[key] = (version, n)
                stored = head
            else:
                writes.append((key, raw))
                stored = raw
            if old:
                writes += [(_part_key(key, old[0], i), None) for i in range(old[1])]
            for k, v in writes:
                if v is None:
                    with contextlib.suppress(KeyError):
                        del store[k]
                else:
                    store[k] = v
            cache[key] = _entry(stored, obj)
            out += [(k.encode(), v) for k, v in writes]
        return out

    def versions(self) -> dict[int, int]:
        """Counters that move whenever the stored bytes of an owned key may have changed:
        per partition, the store writes ``flush`` made; under -1, the ``forget`` calls.

        ``flush`` is the only writer of the partitions this worker actively owns, but
        for changelog recovery (and standby updates of partitions that are not active
        here), which writes the store underneath; a partition becomes active only
        through a rebalance, and every rebalance begins with ``forget`` (the
        app calls it on partitions revoked). So equal versions at two moments mean
        every owned key holds the same bytes, if the owned partitions were recovered
        at both (the collector reads the tables only when ready). Under -2, the
        number of keys stored, when that costs nothing to know (a dict store).
        """
        out = dict(self._versions)
        out[-1] = self._generation
        inner = getattr(self.table.data, "data", self.table.data)
        if isinstance(inner, dict):
            out[-2] = len(inner)
        return out

    def forget(self) -> None:
        """Drop the decoded cache (not dirty objects): after a rebalance, for memory."""
        self._generation += 1
        keep = {k: self._cache[k] for k in self._dirty if k in self._cache}
        self._cache = keep


async def _one_by_one(send: Send, topic: str, partition: int,
                      records: list[tuple[bytes, bytes | None]]) -> list[tuple[Any, int]]:
    """``SendMany`` by one ``send`` per record."""
    return [(await send(topic, key, value, partition), 1) for key, value in records]


def _nothing_stored(key: str) -> bytes | None:
    return None


def _persist_offset(store: Any, after_first: int = 0) -> Callable[[Any], None]:
    """A done callback: the store holds the changelog up to the delivered record, the
    ``after_first``-th after the one the future's metadata names (a record batch's
    future names its first record)."""
    def done(fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        md = fut.result()
        tp = getattr(md, "topic_partition", None)
        if tp is not None:
            store.set_persisted_offset(tp, md.offset + after_first)

    return done
