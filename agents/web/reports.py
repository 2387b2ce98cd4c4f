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


def install_report_views(app: Any, rt: Runtime) -> None:
    async def reports(self: Any, request: Any, period: str) -> Any:
        try:
            resolve_period(period, "UTC", 0.0)
        except ValueError as exc:
            return self.json({"error": str(exc)}, status=400)
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        return self.json(reports_body(rt, period, time.time()))

    app.page("/api/reports/{period}")(reports)
