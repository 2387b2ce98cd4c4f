"""Bad input never breaks the engine, and made-up ids cannot grow its memory."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalog import parse_catalog
from streams.engine import Engine
from streams.events import InvalidEvent, parse_event

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

NOW = 1_800_000_000.0
CATALOG = parse_catalog({
    "components": {"a": {"kpi": 0.99}, "b": {}},
    "services": {"s": {"kind": "external", "sla": {"target": 0.99, "period": "1d"},
                       "requires": [{"any": ["a", "b"]}]}},
})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_get_exactly_one_outcome(raw: bytes) -> None:
    engine = Engine(CATALOG)
    outcome, reason = engine.apply_raw(raw, NOW)
    assert sum(engine.counts.values()) == 1
    assert engine.counts[outcome] == 1
    if outcome == "invalid":
        assert reason and reason.startswith("invalid: ")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["component", "state", "ts", "source", "id", "x"]), json_values))
def test_arbitrary_objects_parse_or_say_why(obj: dict[str, object]) -> None:
    try:
        event = parse_event(orjson.dumps(obj), NOW)
    except InvalidEvent as exc:
        assert exc.reason.startswith("invalid: ")
    else:
        assert event.ts <= NOW + 300


@pytest.mark.parametrize(
    "raw",
    [
        b'{"component": "a", "state": "down", "ts": NaN}',
        b'{"component": "a", "state": "down", "ts": Infinity}',
        b'{"component": "a", "state": "down", "ts": 1e400}',
        b'{"component": "a", "state": "down", "ts": 99999999999999999999999999}',
        b'{"component": "a", "state": "down", "ts": "9999-12-31T23:59:59Z"}',
        b'{"component": "a", "state": "down", "ts": "0001-01-01T00:00:00+14:00"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"component": "' + b"x" * 10_000_000 + b'", "state": "up", "ts": 1}',
        "{\"component\": \"\u00e9t\u00e9\", \"state\": \"up\", \"ts\": 1}".encode(),
    ],
    ids=["nan", "infinity", "overflow-float", "huge-int", "far-future", "far-past-offset",
         "deep-json", "10MiB-id", "unicode-id"],
)
def test_nasty_values_are_invalid_not_fatal(raw: bytes) -> None:
    engine = Engine(CATALOG)
    outcome, reason = engine.apply_raw(raw, NOW)
    assert outcome in ("invalid", "unmapped", "accepted")
    assert sum(engine.counts.values()) == 1
    if outcome == "invalid":
        assert reason


def test_a_million_made_up_ids_stay_bounded_and_counted() -> None:
    engine = Engine(CATALOG)
    n = 1_000_000
    for i in range(n):
        engine.apply_raw(b'{"component":"fake-%d","state":"down","ts":%d}' % (i, NOW - 60), NOW)
    assert engine.counts["unmapped"] == n
    assert len(engine.unmapped.latest) == engine.unmapped.capacity
    assert engine.components == {}  # unknown ids get no tracker
    estimate = engine.unmapped.count()
    assert abs(estimate - n) / n < 0.03
    report = engine.report(NOW)
    assert set(report.components) == {"a", "b"}  # no series for made-up ids
    assert report.services["s"].availability_ratio["1d"] == 1.0
