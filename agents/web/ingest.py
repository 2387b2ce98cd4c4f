"""HTTP ingestion: Alertmanager webhooks and plain JSON become component events.

Any Prometheus-monitored component can feed slawatch without code: point an
Alertmanager webhook receiver at ``POST /ingest/alertmanager``. Each alert is published
to the alerts topic for the component named by a label (default ``instance``); the
alerts agent (``agents/worker/alerts.py``) keeps the component ``down`` while any of its
alerts fires, from the first ``startsAt``, and ``up`` from the last ``endsAt``.

A body is taken whole or not at all: a half-applied batch is harder to reason about
than a 400 that names the bad line. Validation uses the same ``parse_event`` as the
worker, so what is accepted here is never dead-lettered later as invalid.

The limits of ``agents/web/limits.py`` (size, items, values, nesting) are checked on the
raw bytes before anything is parsed, and parsing runs on ``PARSE_POOL``'s one thread so
that the event loop (``/healthz``, the pipeline) keeps its turn.
"""

from __future__ import annotations

import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from agents.web.limits import MAX_BODY_BYTES, MAX_ITEMS, LimitError, check_structure
from streams.events import InvalidEvent, parse_event

#: A refused request (status and reason).
IngestError = LimitError
#: A single request may not carry more events than this.
MAX_EVENTS = MAX_ITEMS
#: Content types ingest takes: JSON is never a "simple" cross-site request, so a web
#: page cannot make a browser post events (text/plain forms can).
CONTENT_TYPES = ("application/json", "application/x-ndjson")

#: One thread parses the bodies, one at a time (``limits.MAX_CONCURRENT_INGESTS`` bound
#: the bodies held while they wait).
PARSE_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slawatch-ingest")


@dataclass(frozen=True, slots=True)
class Batch:
    """Validated events ready to publish: (key, value) pairs in wire format."""

    messages: list[tuple[bytes, bytes]]
    skipped: int = 0  # alerts without the component label


def check_size(body: bytes, limit: int = MAX_BODY_BYTES) -> None:
    if len(body) > limit:
        raise IngestError(413, f"body of {len(body)} bytes is larger than the limit of {limit}")


def parse_events_body(body: bytes, now: float | None = None) -> Batch:
    """A JSON object, a JSON array of objects, or JSON lines, each a §1 event."""
    check_size(body)
    now = time.time() if now is None else now
    text = body.strip()
    if not text:
        raise IngestError(400, "empty body: expected a JSON event, an array of events or JSON lines")
    raws: list[tuple[str, bytes]]
    check_structure(text, lines=text[:1] != b"[")
    if text[:1] == b"[":
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise IngestError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(items, list):
            raise IngestError(400, "body is not a JSON array")
        raws = [(f"item {i}", orjson.dumps(item)) for i, item in enumerate(items)]
    else:
        raws = [(f"line {i + 1}", line) for i, line in enumerate(text.split(b"\n")) if line.strip()]
    if len(raws) > MAX_EVENTS:
        raise IngestError(413, f"{len(raws)} events in one request; the limit is {MAX_EVENTS}")
    messages: list[tuple[bytes, bytes]] = []
    errors: list[str] = []
    for where, raw in raws:
        try:
            event = parse_event(raw, now)
        except InvalidEvent as exc:
            errors.append(f"{where}: {exc.reason}")
            continue
        messages.append((event.component.encode(), raw))
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise IngestError(400, f"{len(errors)} of {len(raws)} events are invalid, none was accepted: {shown}")
    return Batch(messages)


def parse_alertmanager(body: bytes, label: str = "instance", now: float | None = None,
                       alertnames: frozenset[str] | None = None,
                       pattern: re.Pattern[str] | None = None) -> Batch:
    """An Alertmanager webhook payload (version 4) as alert records for the alerts agent
    (``agents/worker/alerts.py``), keyed by component.

    ``label``: the label naming the component, or several separated by commas (the first
    one present wins). ``pattern``: a regular expression whose first group, matched
    against that label's value, is the component id (e.g. ``([^:]+)(:\\d+)?`` drops an
    ``instance`` port); a value it does not match is skipped. ``alertnames``: only
    these alerts count; the others are skipped.
    """
    check_size(body)
    now = time.time() if now is None else now
    check_structure(body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngestError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise IngestError(400, "not an Alertmanager webhook payload: expected an object with `alerts`")
    alerts: list[Any] = payload["alerts"]
    if len(alerts) > MAX_EVENTS:
        raise IngestError(413, f"{len(alerts)} alerts in one request; the limit is {MAX_EVENTS}")
    names = [n.strip() for n in label.split(",") if n.strip()]
    messages: list[tuple[bytes, bytes]] = []
    skipped = 0
    errors: list[str] = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            errors.append(f"{where}: not an object")
            continue
        labels = alert.get("labels")
        if not isinstance(labels, dict):
            skipped += 1
            continue
        if alertnames is not None and labels.get("alertname") not in alertnames:
            skipped += 1  # not an alert that means "this component is down"
            continue
        value = next((labels[n] for n in names if isinstance(labels.get(n), str)), None)
        if value is not None and pattern is not None:
            match = pattern.fullmatch(value)
            value = match.group(1) if match and match.groups() else (value if match else None)
        if value is None:
            skipped += 1  # an alert about something that is not a component
            continue
        status = alert.get("status")
        if status == "firing":
            state, ts_field = "down", "startsAt"
        elif status == "resolved":
            state, ts_field = "up", "endsAt"
        else:
            errors.append(f"{where}: status {status!r} is neither firing nor resolved")
            continue
        ts = _alert_time(alert.get(ts_field))
        if ts is None:
            errors.append(f"{where}: {ts_field} {alert.get(ts_field)!r} is not a time")
            continue
        ts = min(ts, now)  # Alertmanager clocks may run ahead a little; never beyond now
        # The same checks as the event this alert may become (component id, time).
        try:
            event = parse_event(orjson.dumps({"component": value, "state": state, "ts": ts}), now)
        except InvalidEvent as exc:
            errors.append(f"{where}: {exc.reason}")
            continue
        starts = _alert_time(alert.get("startsAt"))
        fingerprint = alert.get("fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            # Alertmanager's fingerprint is a hash of the label set: the same here.
            fingerprint = hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        messages.append((event.component.encode(), orjson.dumps({
            "fp": fingerprint[:128],
            "status": status,
            "starts": min(starts, now) if starts is not None else ts,
            "ends": ts if status == "resolved" else None,
            "alertname": str(labels.get("alertname", ""))[:200],
        })))
    if errors:
        shown = "; ".join(errors[:10])
        raise IngestError(
            400, f"{len(errors)} of {len(alerts)} alerts are invalid, none was accepted: {shown}"
        )
    return Batch(messages, skipped)


def _alert_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    text = value
    # Go's RFC 3339 has up to nine fractional digits; Python's parser takes six.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[:min(digits, 6)] + rest[digits:]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None or dt.year < 1971:  # Go's zero time means "not set"
        return None
    return dt.timestamp()
