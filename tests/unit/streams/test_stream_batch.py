"""The column decoder of stage 1 against ``parse_event``, message by message.

``decode`` takes a whole-batch shortcut when every message is plain; whatever the mix,
it must accept exactly the messages ``parse_event`` accepts, with the same component,
state and ts, and reject the others with ``parse_event``'s reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import events
from streams.batch import decode, decode_columns
from streams.events import InvalidEvent, parse_event

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

NOW = 1_709_251_200.0

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """Mostly plain events, some with one field off in the ways publishers get it wrong."""
    obj: dict[str, Any] = {
        "component": draw(st.sampled_from(("db-1", "web.2", "sw:3", "bad id", ""))),
        "state": draw(st.sampled_from(("up", "down", "maintenance", "DOWN", "Up", "sideways"))),
        "ts": draw(st.one_of(st.floats(NOW - 1e6, NOW + 400), st.integers(1, 2_000_000_000),
                             st.just("2024-03-01T00:00:00Z"))),
    }
    for opt in ("source", "id"):
        if draw(st.booleans()):
            obj[opt] = draw(st.one_of(st.text(max_size=4), _values))
    if draw(st.integers(0, 9)) == 0:  # a field of the wrong type, or missing
        field = draw(st.sampled_from(("component", "state", "ts")))
        if draw(st.booleans()):
            del obj[field]
        else:
            obj[field] = draw(_values)
    raw = json.dumps(obj, allow_nan=False).encode()  # orjson cannot write ints > 64 bits
    kind = draw(st.integers(0, 29))
    if kind == 0:
        return raw[:-1]  # broken JSON
    if kind == 1:
        return b"[" + raw + b"]"  # not an object
    if kind == 2:  # other layouts of the same object (the C decoder reads JSON itself)
        return json.dumps(obj, indent=draw(st.sampled_from((None, 0, 2))),
                          separators=draw(st.sampled_from(((",", ":"), (" ,", " : ")))),
                          sort_keys=draw(st.booleans())).encode()
    if kind == 3:  # keys in reverse order, or one of them twice
        items = list(obj.items())[::-1]
        if items and draw(st.booleans()):
            items.append(draw(st.sampled_from(items)))
        return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in items) + "}").encode()
    if kind == 4 and isinstance(obj.get("ts"), (int, float)):  # numbers written other ways
        text = draw(st.sampled_from(("-0", "0", "1e9", "1E9", "1.7e9", "-1.5", "01", "1.", ".5",
                                     "+1", "1e", "17092512e2", "1e400", "123456789012345678901",
                                     "1709251200.000000000000000000001")))
        return raw.replace(json.dumps(obj["ts"]).encode(), text.encode(), 1)
    if kind == 5:  # escapes and non-ASCII text
        text = draw(st.sampled_from(('"db\\u002d1"', '"db\\/1"', '"n\u00e4gios"', '"tab\\there"')))
        field = draw(st.sampled_from(("component", "source", "id")))
        obj[field] = "x"
        return json.dumps(obj).replace('"x"', text, 1).encode()
    if kind == 6:  # whitespace around everything
        return b" \n\t" + raw.replace(b":", b" :\r\n ").replace(b",", b" , ") + b" \n"
    return raw


def _one_by_one(raws: list[bytes]) -> tuple[list[tuple[str, int, float]], list[tuple[int, str]]]:
    ok: list[tuple[str, int, float]] = []
    bad: list[tuple[int, str]] = []
    for i, raw in enumerate(raws):
        try:
            e = parse_event(raw, NOW)
        except InvalidEvent as exc:
            bad.append((i, exc.reason))
        else:
            ok.append((e.component, int(e.state), e.ts))
    return ok, bad


@settings(max_examples=400, deadline=None)
@given(raws=st.lists(messages(), max_size=12), warm=st.booleans())
def test_decode_accepts_and_rejects_what_parse_event_does(raws: list[bytes], warm: bool) -> None:
    if not warm:
        events._valid_ids.clear()
    (comps, states, tss), index, rejects = decode(raws, NOW)
    got = list(zip(comps, states, tss, strict=True))
    want, want_bad = _one_by_one(raws)
    assert got == want
    assert all(type(t) is float for t in tss)
    assert rejects == want_bad
    if index is not None:
        assert index == sorted(index) and len(index) == len(got)
        assert sorted([i for i, _ in rejects] + index) == list(range(len(raws)))
    else:
        assert not rejects and len(got) == len(raws)


def test_a_plain_batch_takes_the_column_path() -> None:
    events._valid_ids.update(("db-1", "web-1"))
    raws = [orjson.dumps({"component": c, "state": s, "ts": NOW - k, "source": "nagios"})
            for k, (c, s) in enumerate([("db-1", "down"), ("web-1", "up"), ("db-1", "maintenance")])]
    raws.append(orjson.dumps({"component": "web-1", "state": "up", "ts": 1_709_000_000}))
    assert decode_columns(raws, NOW) == (
        ["db-1", "web-1", "db-1", "web-1"], [2, 0, 1, 0], [NOW, NOW - 1, NOW - 2, 1_709_000_000.0]
    )


def test_a_catalogs_components_take_the_column_path_from_their_first_event() -> None:
    from streams.catalog import parse_catalog

    events._valid_ids.clear()
    parse_catalog({"components": {"fresh-db.dc1": {}, "fresh-web:8080": {}},
                   "services": {"shop": {"kind": "external", "customers": ["all"],
                                         "sla": {"target": 0.99, "period": "30d"},
                                         "requires": ["fresh-db.dc1", "fresh-web:8080"]}}})
    raws = [orjson.dumps({"component": c, "state": "down", "ts": NOW})
            for c in ("fresh-db.dc1", "fresh-web:8080")]
    assert decode_columns(raws, NOW) == (["fresh-db.dc1", "fresh-web:8080"], [2, 2], [NOW, NOW])
    # an id no catalog names still goes message by message the first time
    assert decode_columns([orjson.dumps({"component": "other", "state": "up", "ts": NOW})],
                          NOW) is None


@pytest.mark.parametrize("change", [
    {"state": "Down"},  # not exact case: parse_event lowers it
    {"ts": "2024-03-01T00:00:00Z"},
    {"ts": NOW + 301},  # too far ahead
    {"ts": True},
    {"source": 3},
    {"id": ["x"]},
    {"component": "new-component"},  # not yet known to be well formed
])
def test_anything_unusual_leaves_the_column_path(change: dict[str, Any]) -> None:
    events._valid_ids.discard("new-component")
    events._valid_ids.add("db-1")
    obj = {"component": "db-1", "state": "down", "ts": NOW, **change}
    plain = orjson.dumps({"component": "db-1", "state": "up", "ts": NOW})
    assert decode_columns([plain, orjson.dumps(obj)], NOW) is None
    assert decode_columns([plain], NOW) is not None


@st.composite
def numbers(draw: st.DrawFn) -> str:
    """JSON numbers as publishers write timestamps, and around the C reader's limits
    (19 digits, 2^53, exponents within 22 of 0)."""
    sign = draw(st.sampled_from(("", "-")))
    whole = draw(st.one_of(st.just("0"), st.integers(1, 10**19).map(str)))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12).map("." .__add__)))
    exp = draw(st.one_of(st.just(""), st.tuples(st.sampled_from(("e", "E")), st.sampled_from(("", "+", "-")),
                                                st.integers(0, 30)).map(lambda t: f"{t[0]}{t[1]}{t[2]}")))
    return sign + whole + frac + exp


@settings(max_examples=1000, deadline=None)
@given(numbers())
def test_a_ts_is_read_as_orjson_reads_it(text: str) -> None:
    events._valid_ids.add("db-1")
    raw = b'{"component":"db-1","state":"up","ts":' + text.encode() + b"}"
    want = float(orjson.loads(text))
    if want - NOW > events.MAX_FUTURE_SECONDS:
        assert decode_columns([raw], NOW) is None
        return
    cols = decode_columns([raw], NOW)
    if cols is None:  # an integer orjson reads but the column path leaves to parse_event
        assert "." not in text and "e" not in text.lower()
        return
    got = cols[2][0]
    assert got == want and math.copysign(1, got) == math.copysign(1, want), text


def test_an_id_the_decoder_met_is_decoded_as_parse_event_decodes_it() -> None:
    """The C decoder keeps the strings of the well-formed ids it met (being well formed
    is a property of an id's bytes): after the set of known ids forgot one, an event
    naming it is still accepted, with the same values, as ``parse_event`` accepts it."""
    events._valid_ids.add("gone-1")
    raw = orjson.dumps({"component": "gone-1", "state": "up", "ts": NOW})
    for _ in range(2):
        cols = decode_columns([raw], NOW)
        assert cols is not None and cols[0] == ["gone-1"]
    events._valid_ids.discard("gone-1")
    (comps, states, tss), _, rejects = decode([raw], NOW)
    e = parse_event(raw, NOW)
    assert (comps, states, tss, rejects) == ([e.component], [int(e.state)], [e.ts], [])
