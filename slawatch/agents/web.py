"""HTTP views on the worker's Faust web server: /metrics, health, and the JSON API.

* ``/metrics`` — Prometheus text, built at scrape time by ``SlawatchCollector``.
* ``/healthz`` — 200 while the process and its event loop answer (liveness: restart
  me if this fails).
* ``/readyz`` — 200 once partitions are assigned and the tables recovered, 503 while
  starting or rebalancing (readiness: don't trust my numbers yet).
* ``/api/services`` — the services this worker owns, as JSON (``complete`` says whether
  that is all of them, i.e. whether other workers share the group).
* ``/api/services/{name}/outages`` — routed by Faust to the worker that owns the service,
  so any worker answers for any service.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry

from slawatch.agents.collector import render
from slawatch.agents.runtime import Runtime

log = logging.getLogger("slawatch.web")


def install_views(app: Any, rt: Runtime, registry: CollectorRegistry, services_table: Any) -> None:
    """Register the views on ``app`` (a faust.App)."""

    async def metrics(self: Any, request: Any) -> Any:
        from aiohttp.web import Response

        body, content_type = render(registry)
        # aiohttp refuses a content_type with parameters (Prometheus's has version and
        # charset), so the header is set as is.
        return Response(body=body, headers={"Content-Type": content_type})

    async def healthz(self: Any, request: Any) -> Any:
        return self.json({"status": "ok", "pid": _pid()})

    async def readyz(self: Any, request: Any) -> Any:
        ready = rt.ready()
        return self.json(
            {
                "ready": ready,
                "rebalancing": bool(rt.app is not None and rt.app.rebalancing),
                "services_owned": len(rt.owned_services()) if ready else 0,
            },
            status=200 if ready else 503,
        )

    async def services(self: Any, request: Any) -> Any:
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        now = time.time()
        report = rt.report(now)
        owned = sorted(report.services)
        return self.json(
            {
                "now": now,
                "complete": len(owned) == len(rt.catalog.services),
                "services": [report.services[name].to_json() for name in owned],
            }
        )

    async def outages(self: Any, request: Any, name: str) -> Any:
        from slawatch.streams.report import outages as outages_of

        svc = rt.catalog.services.get(name)
        if svc is None:
            return self.json({"error": f"no service {name!r} in the catalog"}, status=404)
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        now = time.time()
        items = outages_of(svc, rt.services.get(name), now)
        return self.json(
            {
                "service": name,
                "now": now,
                "sla_period": svc.period.label,
                "outages": [o.to_json() for o in items],
            }
        )

    # Registered by calls, not decorators: Faust's decorators are untyped.
    app.page("/metrics")(metrics)
    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)
    app.page("/api/services")(services)
    # table_route forwards the request to the worker that owns the service's partition.
    app.page("/api/services/{name}/outages")(
        app.table_route(table=services_table, match_info="name")(outages)
    )


def _pid() -> int:
    import os

    return os.getpid()
