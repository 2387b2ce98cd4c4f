"""Component events as monitoring tools publish them (CONTRACT §1).

Parsing is on the hot path of the pipeline, so it is written as straight-line checks
on the decoded dict; every rejection carries a reason that is fit for a DLQ header
and for a human reading it at 3 a.m.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson

from streams.states import BY_NAME, State

_BY_NAME = BY_NAME

#: Events may be ahead of the worker's clock by this much (clock skew between hosts);
#: further ahead is a broken clock or a typo, and would otherwise count in the future.
MAX_FUTURE_SECONDS = 300.0

COMPONENT_ID = re.compile(r"[A-Za-z0-9._:/@-]{1,200}")
_component_ok = COMPONENT_ID.fullmatch
#: Ids already seen to match COMPONENT_ID: a set lookup instead of the regex for the ids
#: that come again and again. Bounded, so a flood of made-up ids cannot grow it.
_valid_ids: set[str] = set()
_VALID_IDS_MAX = 100_000


def remember_valid(ids: Iterable[str]) -> None:
    """Ids known to match COMPONENT_ID (a catalog's, checked as it was parsed), beyond
    the bound: a catalog's first events then take the columns path too, where every new
    id sent its whole slice message by message (a third of a 200k-event storm over
    20,000 components)."""
    _valid_ids.update(ids)
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class InvalidEvent(ValueError):
    """The message cannot be applied; ``reason`` goes to the DLQ."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~0.5 µs per event
class ComponentEvent:
    component: str
    state: State
    ts: float
    source: str | None = None
    id: str | None = None


def parse_ts(value: object) -> float:
    """Seconds since the epoch from an RFC 3339 string with offset or a number."""
    if isinstance(value, bool):  # bool is an int in Python; a JSON true is no time
        raise InvalidEvent("invalid: ts is a boolean, not a time")
    if isinstance(value, int | float):
        try:
            ts = float(value)
        except OverflowError:
            raise InvalidEvent("invalid: ts is out of range") from None
        if not math.isfinite(ts):
            raise InvalidEvent("invalid: ts is not a finite number")
        return ts
    if isinstance(value, str):
        if len(value) > 64:
            raise InvalidEvent(f"invalid: ts {value[:64]!r}... is not an RFC 3339 time")
        try:
            # RFC 3339 allows a lowercase "t" and "z"; Python's parser does not.
            dt = datetime.fromisoformat(value.upper())
        except ValueError:
            raise InvalidEvent(f"invalid: ts {value!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise InvalidEvent(f"invalid: ts {value!r} has no UTC offset")
        return dt.timestamp()
    raise InvalidEvent(f"invalid: ts has type {_json_type(value)}, expected string or number")


def parse_event(raw: bytes | bytearray | memoryview | str, now: float) -> ComponentEvent:
    """Decode and validate one message value; raise InvalidEvent with the reason."""
    try:
        obj = _loads(raw)
    except _JSONDecodeError:
        raise InvalidEvent("invalid: not JSON") from None
    if type(obj) is not dict:
        raise InvalidEvent(f"invalid: not a JSON object but {_json_type(obj)}")
    try:
        component = obj["component"]
        state_name = obj["state"]
        ts_value = obj["ts"]
    except KeyError as exc:
        raise InvalidEvent(f"invalid: missing field {exc.args[0]}") from None
    if type(component) is not str:
        raise InvalidEvent(f"invalid: component has type {_json_type(component)}, expected string")
    if component not in _valid_ids:
        if _component_ok(component) is None:
            raise InvalidEvent(
                "invalid: component must be 1-200 characters of A-Za-z0-9._:/@-"
            )
        if len(_valid_ids) < _VALID_IDS_MAX:
            _valid_ids.add(component)
    if type(state_name) is not str:
        raise InvalidEvent(f"invalid: state has type {_json_type(state_name)}, expected string")
    state = _BY_NAME.get(state_name)
    if state is None:
        state = _BY_NAME.get(state_name.lower())
        if state is None:
            raise InvalidEvent(
                f"invalid: unknown state {state_name[:40]!r} (expected up, down or maintenance)"
            )
    # orjson never returns a non-finite float (it rejects NaN, Infinity and overflow)
    ts = ts_value if type(ts_value) is float else parse_ts(ts_value)
    if ts - now > MAX_FUTURE_SECONDS:
        raise InvalidEvent(f"invalid: ts {ts - now:.0f} s in the future")
    source = obj.get("source")
    if source is not None and type(source) is not str:
        raise InvalidEvent(f"invalid: source has type {_json_type(source)}, expected string")
    event_id = obj.get("id")
    if event_id is not None and type(event_id) is not str:
        raise InvalidEvent(f"invalid: id has type {_json_type(event_id)}, expected string")
    return ComponentEvent(component, state, ts, source, event_id)


def encode_event(event: ComponentEvent) -> bytes:
    """The wire form of §1 (epoch seconds), as publishers and the simulator send it."""
    obj: dict[str, object] = {
        "component": event.component,
        "state": event.state.label,
        "ts": event.ts,
    }
    if event.source is not None:
        obj["source"] = event.source
    if event.id is not None:
        obj["id"] = event.id
    return orjson.dumps(obj)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
