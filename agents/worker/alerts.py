"""Alertmanager alerts to component events: a component is down while ANY alert fires.

Alertmanager notifies per alert group: "HostDown and DiskFull fire for mail-srv-01",
later "DiskFull resolved". Turning each notification straight into an event made the
component `up` while HostDown still fired. So ``POST /ingest/alertmanager`` publishes
each alert (fingerprint, firing or resolved, its times) to the internal topic
``<app-id>-alerts``, keyed by component, and this agent keeps the set of firing
fingerprints per component in the table ``alerts`` (changelog ``<app-id>-alerts-changelog``).
The topic and the table are co-partitioned, so exactly one worker owns a component's set,
and the set survives restarts and rebalances like every table.

Per alert (``decide``):

* firing: the fingerprint joins the set and a ``down`` event is published at its
  ``startsAt``, and another at the time of the last ``up`` this agent published if the
  alert started before it (delivered late, it fired across that ``up``);
* resolved: the fingerprint leaves the set; when the set is empty an ``up`` event is
  published at the latest ``endsAt`` seen (never before the last ``down``: 1 ms after
  it when an alert delivered late put that down after the endsAt).

Both are idempotent: a redelivered alert publishes the same event again, which the
pipeline counts as a ``duplicate``. A component keeps at most ``MAX_FIRING`` firing
fingerprints (the oldest are dropped first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger("slawatch.alerts")

#: Firing alerts remembered per component.
MAX_FIRING = 1000
#: Seconds between the last `down` and an `up` that could not be later by its endsAt.
UP_AFTER_DOWN = 0.001


@dataclass
class AlertSet:
    """One component's firing alerts and the times of the events published for it."""

    firing: dict[str, float] = field(default_factory=dict)  # fingerprint -> startsAt
    down_at: float = 0.0  # the last `down` published
    up_at: float = 0.0  # the last `up` published
    ended: float = 0.0  # latest endsAt of the alerts resolved since the set was empty

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> AlertSet:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        return cls({str(k): float(v) for k, v in data.get("firing", {}).items()},
                   float(data.get("down_at", 0.0)), float(data.get("up_at", 0.0)),
                   float(data.get("ended", 0.0)))

    def to_bytes(self) -> bytes:
        return orjson.dumps({"firing": self.firing, "down_at": self.down_at,
                             "up_at": self.up_at, "ended": self.ended})


def decide(alerts: AlertSet, alert: dict[str, Any]) -> list[tuple[str, float]]:
    """Apply one alert (``fp``, ``status``, ``starts``, ``ends``) to ``alerts``; return
    the (state, ts) of the events to publish."""
    fp = str(alert["fp"])
    if alert["status"] == "firing":
        starts = float(alert["starts"])
        alerts.firing.pop(fp, None)
        alerts.firing[fp] = starts
        while len(alerts.firing) > MAX_FIRING:
            alerts.firing.pop(next(iter(alerts.firing)))
        out = [("down", starts)]
        if starts < alerts.up_at:
            # Known only now (delivered late): it fired across the last `up`, which a
            # `down` at the same instant overrides.
            out.append(("down", alerts.up_at))
        alerts.down_at = max(alerts.down_at, out[-1][1])
        return out
    alerts.firing.pop(fp, None)
    alerts.ended = max(alerts.ended, float(alert["ends"]))
    if alerts.firing:
        return []
    ts = alerts.ended
    if ts <= alerts.down_at:
        # At the same instant a `down` wins over an `up` (the pipeline's rule), so an up
        # that must follow the last down comes a millisecond after it.
        ts = alerts.down_at + UP_AFTER_DOWN
    alerts.up_at = max(alerts.up_at, ts)
    alerts.ended = 0.0
    return [("up", ts)]


def install_alerts(app: Any, settings: Any, table: Any) -> Any:
    """The agent on ``<app-id>-alerts``; returns its topic (ingest publishes there)."""
    topic = app.topic(
        alerts_topic(settings.app_id), key_type=bytes, value_type=bytes, key_serializer="raw",
        value_serializer="raw", partitions=settings.partitions,
        replicas=settings.replication_factor, internal=True,
    )

    async def alerts_agent(stream: Any) -> None:
        async for ev in stream.events():
            key = ev.key
            component = key.decode()
            try:
                alert = orjson.loads(ev.value)
            except orjson.JSONDecodeError:  # written by ingest only: cannot happen
                log.error("alerts: unreadable message at offset %s", ev.message.offset)
                continue
            state = AlertSet.from_bytes(table.get(component))
            out = decide(state, alert)
            table[component] = state.to_bytes()
            for st, ts in out:
                value = orjson.dumps({"component": component, "state": st, "ts": ts,
                                      "source": "alertmanager", "id": f"{alert['fp']}:{st}"})
                fut = await app.producer.send(settings.events_topic, key, value, None, None, None)
                await fut

    # Registered by a call, not a decorator: Faust's decorators are untyped.
    app.agent(topic, name="slawatch-alerts")(alerts_agent)
    return topic


def alerts_topic(app_id: str) -> str:
    return f"{app_id}-alerts"
