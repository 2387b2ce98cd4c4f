"""What a run of real workers must show, from the brute-force reference alone.

``tests/reference.py`` knows valid events; this adds a naive reading of the raw bytes of
CONTRACT §1 (written from the contract, sharing no code with ``streams/events.py``), so
a test can feed it exactly the messages it published and get every outcome, the
multiset of (message, reason kind) the DLQ must hold, and the numbers of §3 rendered as
the series of §4. The rendering borrows the metric spec's ``families`` (names and labels
only: every number comes from the reference).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import yaml

from tests.reference import Ev, RefCatalog, classify, reference_report

OUTCOMES = ("accepted", "invalid", "duplicate", "late", "unmapped")
_ID = re.compile(r"[A-Za-z0-9._:/@-]{1,200}")
_STATES = ("up", "down", "maintenance")
FUTURE = 300.0


def read_event(raw: bytes, now: float) -> Ev | None:
    """The event a message holds, or None if CONTRACT §1 calls it invalid."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    comp, state, ts = obj.get("component"), obj.get("state"), obj.get("ts")
    if not isinstance(comp, str) or not _ID.fullmatch(comp):
        return None
    if not isinstance(state, str) or state.lower() not in _STATES:
        return None
    for opt in ("source", "id"):
        if opt in obj and not isinstance(obj[opt], str):
            return None
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float)):
        t = float(ts)
    elif isinstance(ts, str):
        try:
            d = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
        if d.tzinfo is None:
            return None
        t = d.timestamp()
    else:
        return None
    if not math.isfinite(t) or t - now > FUTURE:
        return None
    return Ev(comp, state.lower(), t)


class Expected:
    """Outcomes, DLQ and series for messages in (per component) arrival order."""

    def __init__(self, catalog_text: str, values: Iterable[bytes], now: float | None = None,
                 lateness: float = 600.0) -> None:
        import time

        self.catalog_dict = yaml.safe_load(catalog_text)
        self.catalog = RefCatalog.from_dict(self.catalog_dict)
        self.lateness = lateness
        now = time.time() if now is None else now
        self.values = list(values)
        events: list[Ev] = []
        owner: list[int] = []  # index into values of each valid event
        self.dlq: Counter[tuple[bytes, str]] = Counter()
        invalid = 0
        for i, raw in enumerate(self.values):
            ev = read_event(raw, now)
            if ev is None:
                invalid += 1
                self.dlq[(raw, "invalid")] += 1
            else:
                events.append(ev)
                owner.append(i)
        outcomes, _ = classify(self.catalog, events, lateness)
        self.events = events
        counts = Counter(outcomes)
        if invalid:
            counts["invalid"] = invalid
        for k, o in enumerate(outcomes):
            if o == "late":
                self.dlq[(self.values[owner[k]], "late")] += 1
        self.counts = {k: counts.get(k, 0) for k in OUTCOMES}

    @property
    def total(self) -> int:
        return len(self.values)

    def samples(self, now: float) -> dict[Any, float]:
        """The series of CONTRACT §4 at ``now`` (the pipeline's, not the worker's)."""
        from tests.fixtures_kafka import reference_samples

        return reference_samples(self, now)

    def outages(self, service: str, now: float) -> list[Any]:
        """The reference's outages of ``service`` in its SLA period (oldest first)."""
        from tests.reference import StepFunctions
        from tests.reference import outages as ref_outages

        _, applied = classify(self.catalog, self.events, self.lateness)
        return ref_outages(self.catalog, StepFunctions(applied), service, now)

    def report(self, now: float) -> Any:
        """The reference's numbers as the engine's ``Report`` (for rendering only)."""
        return self._report(now)

    def _report(self, now: float) -> Any:
        from streams.report import ComponentReport, Report, ServiceReport
        from streams.states import State

        # Every listed component is reported (unmapped ones too), as the worker does.
        listed = sorted(self.catalog_dict["components"])
        ref = reference_report(self.catalog, self.events, now, self.lateness, components=listed)
        state = {"up": State.UP, "down": State.DOWN, "maintenance": State.MAINTENANCE}
        out = Report(now=now)
        services = self.catalog_dict["services"]
        for name, r in ref.services.items():
            spec = services[name]
            period = spec["sla"]["period"]
            out.services[name] = ServiceReport(
                name=name, kind=spec.get("kind", "internal"),
                customers=tuple(spec.get("customers", ())), state=state[r.state],
                availability_ratio=r.availability, sla_availability_ratio=r.sla_availability,
                sla_up_seconds=r.sla_up, sla_down_seconds=r.sla_down, sla_period=period,
                sla_target_ratio=r.sla_target, burn_rate=r.burn_rate,
                error_budget_remaining_ratio=r.error_budget_remaining,
                error_budget_exhaustion_seconds=r.error_budget_exhaustion_seconds,
                trending_below_sla=bool(r.trending_below_sla), sla_status=r.sla_status,
                outage_seconds=r.outage_seconds, restore_target_seconds=r.restore_target_seconds,
                outages_total=r.outages_total, downtime_seconds_total=r.downtime_seconds_total,
                supported_availability_ratio=r.supported_availability, kpi_gap=bool(r.kpi_gap),
                downtime_by_component_seconds=r.downtime_by_component)
        comps = self.catalog_dict["components"]
        for cid, c in ref.components.items():
            spec = comps.get(cid) or {}
            out.components[cid] = ComponentReport(
                name=cid, team=spec.get("team"), kpi_target_ratio=c.kpi, state=state[c.state],
                availability_ratio=c.availability)
        out.events_total = dict(self.counts)
        out.unmapped_components = ref.unmapped
        return out


def dlq_multiset(records: Iterable[Any]) -> Counter[tuple[bytes, str]]:
    """(original bytes, reason kind) of DLQ records: ``late`` or ``invalid``."""
    out: Counter[tuple[bytes, str]] = Counter()
    for rec in records:
        raw_headers, value = rec.headers, rec.value
        if callable(value):  # a confluent-kafka Message
            raw_headers, value = raw_headers(), value()
        headers = {k: bytes(v).decode() for k, v in raw_headers or ()}
        reason = headers.get("slawatch-reason", "")
        out[(value or b"", "late" if reason == "late" else "invalid")] += 1
    return out


def read_to_end(bootstrap: str, topic: str, idle: float = 2.0) -> list[Any]:
    """Every record of ``topic``, read until nothing more came for ``idle`` seconds."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=int(idle * 1000),
                             group_id=None)
    try:
        return list(consumer)
    finally:
        consumer.close()
