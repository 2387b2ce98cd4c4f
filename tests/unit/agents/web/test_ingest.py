"""Alertmanager webhooks and JSON bodies become §1 events, or a 400 that says why."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from agents.web.ingest import IngestError, parse_alertmanager, parse_events_body

NOW = 1_800_000_000.0


def alert(status: str, instance: str | None, starts: str, ends: str = "0001-01-01T00:00:00Z") -> dict:
    labels = {"alertname": "HostDown"}
    if instance is not None:
        labels["instance"] = instance
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": starts,
            "endsAt": ends, "fingerprint": "f00"}


def payload(*alerts: dict) -> bytes:
    return orjson.dumps({"version": "4", "status": "firing", "receiver": "slawatch",
                         "alerts": list(alerts)})


def decoded(batch_messages: list[tuple[bytes, bytes]]) -> list[tuple[str, str, float]]:
    out = []
    for key, value in batch_messages:
        obj = orjson.loads(value)
        assert key.decode() == obj["component"]
        out.append((obj["component"], obj["state"], obj["ts"]))
    return out


def test_firing_is_down_at_starts_and_resolved_is_up_at_ends() -> None:
    starts = datetime(2027, 1, 15, 8, 0, 0, 123456, tzinfo=UTC).timestamp()
    ends = datetime(2027, 1, 15, 7, 30, tzinfo=UTC).timestamp()
    batch = parse_alertmanager(payload(
        alert("firing", "mail-srv-01", "2027-01-15T08:00:00.123456789Z"),  # Go: 9 digits
        alert("resolved", "dns-1", "2027-01-15T07:00:00Z", "2027-01-15T07:30:00+00:00"),
    ), now=starts + 60)
    assert decoded(batch.messages) == [
        ("mail-srv-01", "down", pytest.approx(starts, abs=1e-6)),
        ("dns-1", "up", ends),
    ]
    assert batch.skipped == 0


def test_an_alert_from_a_clock_running_ahead_is_clamped_to_now() -> None:
    # NOW is 2027-01-15T08:00:00Z; the alert claims to start three minutes later.
    batch = parse_alertmanager(payload(alert("firing", "x", "2027-01-15T08:03:00Z")), now=NOW)
    assert decoded(batch.messages) == [("x", "down", NOW)]


def test_alerts_without_the_label_are_skipped_and_the_label_is_configurable() -> None:
    body = payload(alert("firing", None, "2027-01-15T08:00:00Z"))
    assert parse_alertmanager(body, now=NOW + 1e8).skipped == 1
    custom = {"status": "firing", "labels": {"component": "core-sw-1"}, "startsAt": "2027-01-15T08:00:00Z"}
    batch = parse_alertmanager(payload(custom), label="component", now=NOW + 1e8)
    assert decoded(batch.messages)[0][:2] == ("core-sw-1", "down")


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"not json", 400, "not valid JSON"),
        (b'{"alerts": 3}', 400, "not an Alertmanager webhook payload"),
        (payload({"status": "weird", "labels": {"instance": "x"}, "startsAt": "2027-01-01T00:00:00Z"}),
         400, "neither firing nor resolved"),
        (payload({"status": "firing", "labels": {"instance": "x"}, "startsAt": "yesterday"}),
         400, "is not a time"),
        (payload({"status": "firing", "labels": {"instance": "bad id!"}, "startsAt": "2027-01-01T00:00:00Z"}),
         400, "invalid: component"),
        (b"x" * (4 * 1024 * 1024 + 1), 413, "larger than the limit"),
    ],
    ids=["not-json", "no-alerts", "bad-status", "bad-time", "bad-component", "oversize"],
)
def test_bad_alertmanager_bodies_are_refused_whole(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(IngestError) as err:
        parse_alertmanager(body, now=NOW + 1e8)
    assert err.value.status == status
    assert reason in err.value.reason


def test_events_body_accepts_object_array_and_json_lines() -> None:
    one = b'{"component": "a", "state": "DOWN", "ts": 1799999000}'
    assert len(parse_events_body(one, NOW).messages) == 1
    arr = b'[{"component": "a", "state": "up", "ts": 1}, {"component": "b", "state": "down", "ts": 2}]'
    assert [k for k, _ in parse_events_body(arr, NOW).messages] == [b"a", b"b"]
    lines = one + b"\n\n" + b'{"component": "b", "state": "maintenance", "ts": "2027-01-15T08:00:00Z"}\n'
    assert len(parse_events_body(lines, NOW + 1e8).messages) == 2


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"", 400, "empty body"),
        (b"[1, 2", 400, "not valid JSON"),
        (b'{"component": "a", "state": "up", "ts": 1}\n{"component": "a"}', 400,
         "line 2: invalid: missing field state"),
        (b'{"component": "a", "state": "sideways", "ts": 1}', 400, "unknown state"),
        (b"\n".join([b'{"component": "a", "state": "up", "ts": 1}'] * 50_001), 413, "limit is 50000"),
    ],
    ids=["empty", "broken-array", "bad-line", "bad-state", "too-many"],
)
def test_bad_event_bodies_are_refused_whole(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(IngestError) as err:
        parse_events_body(body, NOW)
    assert err.value.status == status
    assert reason in err.value.reason
