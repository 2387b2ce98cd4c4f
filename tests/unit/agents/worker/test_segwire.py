"""The segments wire form: what stage 1 sends is what stage 2 applies, bit for bit."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.worker import segwire
from agents.worker.partitioning import Partitioner
from streams import events, native
from streams.batch import decode
from streams.events import InvalidEvent, parse_event

#: Every test here runs with the C encoder (streams/_native.c) and with the Python one.
pytestmark = pytest.mark.usefixtures("engine_path")
#: A Partitioner imports kafka-python's murmur2 when first made (~250 ms): done here, at
#: collection, not inside a timed hypothesis example.
Partitioner(1)

_ids = st.from_regex(r"[A-Za-z0-9._:/@-]{1,20}", fullmatch=True)
_times = st.floats(allow_nan=False, allow_infinity=False)
_segments = st.lists(
    st.tuples(_ids, _times, st.one_of(_times, st.just(math.inf)), st.integers(0, 2)),
    min_size=1, max_size=30,
)


@given(segs=_segments)
def test_round_trip_is_exact(segs: list[tuple[str, float, float, int]]) -> None:
    got = segwire.decode(segwire.encode(segs))
    assert got == segs
    assert all(type(s) is float and type(e) is float and type(t) is int for _, s, e, t in got)


@given(parts=st.lists(_segments, min_size=1, max_size=4))
def test_columns_of_several_messages_are_their_segments_in_order(
        parts: list[list[tuple[str, float, float, int]]]) -> None:
    cols = segwire.concat([segwire.decode_columns(segwire.encode(p)) for p in parts])
    want = [seg for p in parts for seg in p]
    ends = [math.inf] * len(want) if cols.ends is None else cols.ends
    assert list(zip(cols.comps, cols.starts, ends, cols.states, strict=True)) == want
    # the end column is left out exactly when every segment is open-ended
    assert (cols.ends is None) == all(e == math.inf for _, _, e, _ in want)


def test_json_from_earlier_versions_is_still_read() -> None:
    raw = orjson.dumps([["db-1", 10.5, None, 2], ["db-1", 20, 30.25, 0]])
    assert segwire.decode(raw) == [("db-1", 10.5, math.inf, 2), ("db-1", 20.0, 30.25, 0)]
    assert segwire.decode_columns(raw) == (["db-1", "db-1"], [10.5, 20.0], [math.inf, 30.25],
                                           b"\x02\x00")


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"{}", b"[[1, 2, 3, 4]]", b'[["a", 1.0, null, 7]]', b'[["a", true, null, 0]]',
    segwire.MAGIC, segwire.MAGIC + b"\x05\x00\x00\x00abc",
    segwire.encode([("a", 1.0, math.inf, 2)])[:-1] + b"a\nb",  # one segment, two ids
    segwire.encode([("a", 1.0, math.inf, 2)]).replace(b"\x02a", b"\x09a"),  # state 9
])
def test_anything_else_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        segwire.decode(raw)



_names = st.text(min_size=1, max_size=12)  # a service name may hold any character
_shares = st.lists(st.tuples(_names, _segments), min_size=1, max_size=6)


@given(shares=_shares, max_bytes=st.sampled_from([40, 200, 1000, segwire.MAX_BYTES]))
def test_many_services_round_trip_in_order(
        shares: list[tuple[str, list[tuple[str, float, float, int]]]], max_bytes: int) -> None:
    """Every service gets back exactly its segments, in order, however the messages
    were cut to stay under ``max_bytes`` (a service's list may span messages)."""
    raws = segwire.encode_many(shares, max_bytes)
    assert all(raw.startswith(segwire.MAGIC_MANY) for raw in raws)
    # cut only as needed: a message over the limit holds a single segment
    assert all(len(raw) <= max_bytes or sum(len(c.comps) for _, c in segwire.decode_many(raw)) == 1
               for raw in raws)
    got: list[tuple[str, tuple[str, float, float, int]]] = []
    for raw in raws:
        for name, cols in segwire.decode_many(raw):
            ends = [math.inf] * len(cols.comps) if cols.ends is None else cols.ends
            assert all(type(s) is float for s in cols.starts)
            got += [(name, seg) for seg in zip(cols.comps, cols.starts, ends, cols.states, strict=True)]
    assert got == [(name, seg) for name, segs in shares for seg in segs]


def _added_bytes(prev: bytes, nxt: bytes) -> int:
    """What the first segment of ``nxt`` would have added to ``prev``: its columns (17
    bytes), its id and a newline, and unless it continues ``prev``'s last service, that
    service's count (4 bytes), its JSON name and a comma."""
    last_name = segwire.decode_many(prev)[-1][0]
    name, cols = segwire.decode_many(nxt)[0]
    added = 17 + len(cols.comps[0].encode()) + 1
    if name != last_name:
        added += 4 + len(orjson.dumps(name)) + 1
    return added


@given(shares=st.lists(st.tuples(_names, _segments), min_size=1, max_size=6,
                       unique_by=lambda share: share[0]),  # a fetch's services, as stage 1 has them
       max_bytes=st.sampled_from([40, 120, 200, 1000]))
def test_messages_are_cut_only_when_full(
        shares: list[tuple[str, list[tuple[str, float, float, int]]]], max_bytes: int) -> None:
    """Each message but the last is filled as far as it goes: the next one's first
    segment would not have fitted (one byte to spare per service name counted), so a
    fetch's segments travel in as few messages as the limit allows."""
    raws = segwire.encode_many(shares, max_bytes)
    for prev, nxt in itertools.pairwise(raws):
        spare = len(segwire.decode_many(prev)) + 1
        assert len(prev) + _added_bytes(prev, nxt) + spare > max_bytes


@given(fanout=st.dictionaries(_names, _segments, min_size=1, max_size=8),
       partitions=st.integers(1, 5), single=st.booleans(), kafka=st.booleans())
def test_messages_put_each_service_on_its_partition_in_either_form(
        fanout: dict[str, list[tuple[str, float, float, int]]], partitions: int,
        single: bool, kafka: bool) -> None:
    """What stage 1 sends: every service's segments, in order, on its own partition;
    keyed one-service messages with ``single`` (what 0.1.0 reads), else unkeyed
    messages of many services. The partition of a service is what ``partition_of``
    says: any function, or the worker's ``Partitioner`` (whose memo is read for all
    services at once)."""
    def by_sum(name: str) -> int:
        return sum(name.encode()) % partitions

    partition_of: Callable[[str], int] = Partitioner(partitions) if kafka else by_sum

    got: dict[str, list[tuple[str, float, float, int]]] = {}
    for p, key, raw in segwire.messages(fanout, partition_of, single):
        if single:
            assert key is not None and raw.startswith(segwire.MAGIC)
            shares = [(key.decode(), segwire.decode_columns(raw))]
        else:
            assert key is None and raw.startswith(segwire.MAGIC_MANY)
            shares = segwire.decode_many(raw)
        for name, cols in shares:
            assert partition_of(name) == p
            ends = [math.inf] * len(cols.comps) if cols.ends is None else cols.ends
            got.setdefault(name, []).extend(
                zip(cols.comps, cols.starts, ends, cols.states, strict=True))
    assert got == fanout


@given(shares=_shares, max_bytes=st.sampled_from([60, 300, 1 << 30]))
def test_c_and_python_encoders_write_the_same_bytes(
        shares: list[tuple[str, list[tuple[str, float, float, int]]]], max_bytes: int) -> None:
    fast = native.native
    if fast is None:
        return  # the Python run of the module: nothing to compare with
    c = segwire.encode_many(shares, max_bytes)
    native.native = None
    try:
        py = segwire.encode_many(shares, max_bytes)
    finally:
        native.native = fast
    assert c == py


def test_one_service_message_is_still_read_and_not_taken_for_many() -> None:
    raw = segwire.encode([("a", 1.0, math.inf, 2)])
    with pytest.raises(ValueError):
        segwire.decode_many(raw)
    with pytest.raises(ValueError):
        segwire.decode_columns(segwire.encode_many([("s", [("a", 1.0, math.inf, 2)])])[0])


def _many(*shares: tuple[str, list[tuple[str, float, float, int]]]) -> bytes:
    return segwire.encode_many(list(shares))[0]


@pytest.mark.parametrize("raw", [
    segwire.MAGIC_MANY, segwire.MAGIC_MANY + b"\x01\x00\x00\x00",
    _many(("s", [("a", 1.0, math.inf, 2)]))[:-1],  # the last id cut off
    _many(("s", [("a", 1.0, math.inf, 2)])) + b"\nb",  # one segment, two ids
    _many(("s", [("a", 1.0, math.inf, 2)])).replace(b"\x02[", b"\x09["),  # state 9
    _many(("s", [("a", 1.0, math.inf, 2)])).replace(b'["s"]', b'["s",'),  # names not JSON
    _many(("s", [("a", 1.0, math.inf, 2)])).replace(b'["s"]', b'[ 7 ]'),  # a name not a string
    _many(("s", [("a", 1.0, math.inf, 2)]), ("t", [("b", 2.0, math.inf, 0)])).replace(
        b'["s","t"]', b'["s"    ]'),  # fewer names than counts
    _many(("s", [("a", 1.0, math.inf, 2), ("b", 2.0, math.inf, 0)])).replace(
        b"\x02\x00\x00\x00", b"\x01\x00\x00\x00", 1),  # counts that do not add up
    _many(("s", [("a", math.nan, math.inf, 2)])),  # a start that is not a time
    _many(("s", [("b", 1.0, math.inf, 0), ("a", -math.inf, math.inf, 2)])),  # nor is this
    _many(("s", [("a", 1.0, 5.0, 2), ("b", 1.0, math.nan, 0)])),  # an end that is not a time
])
def test_a_damaged_many_message_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        segwire.decode_many(raw)


@given(ids=st.lists(_ids, min_size=1, max_size=300), data=st.data())
def test_ids_come_back_interned_however_often_they_repeat(ids: list[str],
                                                          data: st.DataObject) -> None:
    """A message holds a few ids many times (C decodes each distinct one once)."""
    import sys

    picks = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=600))
    raw = _many(("s", [(c, float(i), math.inf, i % 3) for i, c in enumerate(picks)]))
    [(name, cols)] = segwire.decode_many(raw)
    assert name == "s" and cols.comps == picks
    assert all(c is sys.intern(p) for c, p in zip(cols.comps, picks, strict=True))
    assert list(cols.starts) == [float(i) for i in range(len(picks))]


def test_ids_are_the_same_strings_across_messages_and_past_the_table_bound() -> None:
    """The C decoder keeps the strings of the ids it saw across messages, at most
    IDS_MAX of them (131,072), then starts again: whatever it holds, a message's ids
    come back equal, interned and in order, non-ASCII ones too, and a message refused
    halfway leaves nothing behind that a later one would read wrong."""
    import sys

    fast = native.native
    wide = [f"c{i}" if i % 7 else f"ü{i}-é" for i in range(140_000)]  # past the bound
    small = ["a", "ü1-é", "c3", "c140001"]
    messages = [small, wide[:1000], small, wide, small, wide[-5:], wide[:3]]
    for k, ids in enumerate(messages):
        if fast is not None and k == 4:
            fast.ids_forget()
        segs = [(c, float(i), math.inf, i % 3) for i, c in enumerate(ids)]
        [raw] = segwire.encode_many([("s", segs)], max_bytes=1 << 30)  # one message
        [(_, cols)] = segwire.decode_many(raw)
        assert cols.comps == ids
        assert all(c is sys.intern(i) for c, i in zip(cols.comps, ids, strict=True))
    bad = _many(("s", [("new-1", 1.0, math.inf, 2), ("new-2", 2.0, math.inf, 0)]))
    with pytest.raises(ValueError):
        segwire.decode_many(bad[:-1] + b"\xff")  # "new-1" read, then a bad id
    [(_, cols)] = segwire.decode_many(bad)
    assert cols.comps == ["new-1", "new-2"]


@pytest.mark.parametrize("ids", [b"a\n\nb", b"\na", b"a\n", b"a\nb\xff", b"a\nb\nc", b"a"])
def test_ids_other_than_three_non_empty_utf8_ones_are_a_value_error(ids: bytes) -> None:
    good = _many(("s", [("a", 1.0, math.inf, 2), ("b", 2.0, math.inf, 0), ("c", 3.0, math.inf, 1)]))
    assert good.endswith(b"a\nb\nc")
    raw = good[:-len(b"a\nb\nc")] + ids
    if ids == b"a\nb\nc":
        assert [c for _, cols in segwire.decode_many(raw) for c in cols.comps] == ["a", "b", "c"]
        return
    with pytest.raises(ValueError):
        segwire.decode_many(raw)


@given(shares=_shares)
def test_earliest_is_the_least_start_of_each_service(
        shares: list[tuple[str, list[tuple[str, float, float, int]]]]) -> None:
    for raw in segwire.encode_many(shares, 1 << 30):
        for _, cols in segwire.decode_many(raw):
            assert segwire.earliest(cols) == min(cols.starts)
    assert segwire.earliest(segwire.Columns([], [], None, b"")) is None


@pytest.mark.parametrize("comp", ["bad id", "bad\u00e9id", "c" * 201])
def test_an_id_only_a_segments_message_brought_is_checked_when_an_event_names_it(comp: str) -> None:
    """The C decoders of segments and of events keep the ids they meet in one table; the
    segments topic is not checked for well-formed ids, so an ill-formed id it brought
    must not pass for one in an event: the event is rejected with ``parse_event``'s
    reason, and the next event of a well-formed id is still accepted."""
    now = 1_709_251_200.0
    events._valid_ids.discard(comp)
    [(_, cols)] = segwire.decode_many(_many(("s", [(comp, 1.0, math.inf, 2)])))
    assert cols.comps == [comp]
    raw = orjson.dumps({"component": comp, "state": "down", "ts": now})
    with pytest.raises(InvalidEvent) as exc:
        parse_event(raw, now)
    for _ in range(2):
        (comps, _, _), _, rejects = decode([raw], now)
        assert comps == [] and rejects == [(0, exc.value.reason)]
    events._valid_ids.add("c1")
    good = orjson.dumps({"component": "c1", "state": "down", "ts": now})
    (comps, _, _), _, rejects = decode([good, raw], now)
    assert comps == ["c1"] and rejects == [(1, exc.value.reason)]


@given(shares=st.lists(st.tuples(_names, _segments), min_size=2, max_size=8,
                       unique_by=lambda share: share[0]))
def test_decode_many_splits_a_message_alike_in_c_and_in_python(
        shares: list[tuple[str, list[tuple[str, float, float, int]]]]) -> None:
    """Each service's columns of a message of several: cut in C (``split_columns``) as
    the Python loop cuts them, the same types (times as arrays, ends None when all are
    open) and the same values."""
    fast = native.native
    if fast is None:
        pytest.skip("no C extension")
    raws = segwire.encode_many(shares)
    native.native = None
    try:
        want = [segwire.decode_many(raw) for raw in raws]
    finally:
        native.native = fast
    got = [segwire.decode_many(raw) for raw in raws]

    def kinds(decoded: list[list[tuple[str, segwire.Columns]]]) -> list[tuple[type, ...]]:
        return [(type(c), type(c.comps), type(c.starts), type(c.ends), type(c.states))
                for shares in decoded for _, c in shares]

    assert got == want and kinds(got) == kinds(want)


def test_split_columns_refuses_counts_that_do_not_add_up() -> None:
    from array import array

    fast = native.native
    if fast is None:
        pytest.skip("no C extension")
    comps, starts = ["a", "b", "c"], array("d", [1.0, 2.0, 3.0])
    for counts in ([1, 1], [2, 2], [0, 3], [4, -1]):
        with pytest.raises(ValueError):
            fast.split_columns(["s", "t"], array("I", counts) if min(counts) >= 0 else counts,
                               comps, starts, None, b"\x00\x01\x02", segwire.Columns)
    with pytest.raises(ValueError):  # a column of another length
        fast.split_columns(["s"], [3], comps, array("d", [1.0]), None, b"\x00\x01\x02",
                           segwire.Columns)
