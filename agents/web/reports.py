"""``GET /api/reports/{period}``: the period reports (CONTRACT §7) of this worker's services.

``period`` is ``YYYY-MM`` or ``current`` (each service's running month, in its own zone).
A worker answers for the services whose partitions it actively owns; ``complete`` says
whether that is the whole catalog and ``missing`` names the others (``slawatch report``
reads every service from the rollups changelog instead, or gathers the workers' answers).
"""

from __future__ import annotations

import time
from typing import Any

from agents.worker.runtime import Runtime
from streams.periods import parse_period, period_label


def resolve_period(text: str, zone: str, now: float) -> str:
    """``current`` -> the month of ``now`` in ``zone``; ``YYYY-MM`` checked; ValueError else."""
    if text == "current":
        return period_label(now, zone)
    parse_period(text)
    return text


def reports_body(rt: Runtime, period: str, now: float, services: list[str] | None = None
                 ) -> dict[str, Any]:
    """The JSON body for ``period`` over the services this worker owns (``services`` to
    narrow them)."""
    keeper = rt.rollups
    owned = rt.owned_services() if services is None else services
    out = []
    for name in sorted(owned):
        acc = keeper.accounting(name)
        report = keeper.report(name, resolve_period(period, acc.zone, now), now)
        if report is not None:
            out.append(report.to_json())
    missing = sorted(set(rt.catalog.services) - set(owned))
    return {
        "period": resolve_period(period, "UTC", now),
        "now": now,
        "complete": not missing,
        "missing": missing,
        "services": out,
    }


#: How many unrecognized components a report and ``/api/unmapped`` list.
UNMAPPED_TOP = 100


def unmapped_body(rt: Runtime) -> dict[str, Any]:
    """The unrecognized components (CONTRACT §1 ``unmapped``) of this worker's input
    partitions seen most often, by events: ``events`` counts them, ``error`` is how many
    of those may belong to ids it displaced (space-saving; exact while few)."""
    from streams.unmapped import merge_top

    stats = rt.owned_stats()
    top = merge_top([s.unmapped.top for s in stats], UNMAPPED_TOP)
    return {
        "distinct": sum(s.unmapped.count() for s in stats),
        "events": sum(s.unmapped.top.n for s in stats),
        "top": [{"component": c, "events": n, "error": e} for c, n, e in top],
    }


def install_report_views(app: Any, rt: Runtime) -> None:
    async def reports(self: Any, request: Any, period: str) -> Any:
        try:
            resolve_period(period, "UTC", 0.0)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        body = reports_body(rt, period, time.time())
        body["unmapped"] = unmapped_body(rt)
        return self.json(body)

    async def unmapped(self: Any, request: Any) -> Any:
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        return self.json(unmapped_body(rt))

    app.page("/api/reports/{period}")(reports)
    app.page("/api/unmapped")(unmapped)
