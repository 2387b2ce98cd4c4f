"""HTTP views on the worker's Faust web server: /metrics, health, and the JSON API.

* ``/metrics`` — Prometheus text, built at scrape time by ``SlawatchCollector``,
  gzip-compressed when asked (``metrics.py``).
* ``/healthz`` — 200 while the process and its event loop answer (liveness: restart
  me if this fails).
* ``/readyz`` — 200 once partitions are assigned and the tables recovered, 503 while
  starting or rebalancing (readiness: don't trust my numbers yet).
* ``/api/services`` — the services this worker owns, as JSON (``complete`` says whether
  that is all of them, i.e. whether other workers share the group).
* ``/api/services/{name}/outages`` — routed by Faust to the worker that owns the service,
  so any worker answers for any service.
* ``/api/worker`` — this worker's consumer positions, commit positions and batch
  counters (how far each stage is; used by ``bench/throughput.py``).
* ``/`` — the wall-screen status page (``statuspage.py``), polling ``/api/services``.
* ``POST /ingest/events`` and ``POST /ingest/alertmanager`` — events over HTTP
  (``ingest.py``), published to the input topic; answered 202 only once the broker has
  acknowledged every event of the body, 400/413 with a reason otherwise.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry

from agents.web import limits
from agents.web.metrics import metrics_response
from agents.worker.alerts import alerts_topic
from agents.worker.runtime import Runtime

log = logging.getLogger("slawatch.web")


def install_views(app: Any, rt: Runtime, registry: CollectorRegistry, services_table: Any) -> None:
    """Register the views on ``app`` (a faust.App)."""

    async def metrics(self: Any, request: Any) -> Any:
        return await metrics_response(request, registry)

    async def healthz(self: Any, request: Any) -> Any:
        # Served without credentials (agents/web/guard.py): nothing but the status.
        return self.json({"status": "ok"})

    async def readyz(self: Any, request: Any) -> Any:
        ready = rt.ready()
        return self.json(
            {
                "ready": ready,
                "rebalancing": bool(rt.app is not None and rt.app.rebalancing),
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
        from streams.report import outages as outages_of
        from streams.windows import period_bounds

        svc = rt.catalog.services.get(name)
        if svc is None:
            return self.json({"error": f"no service {name!r} in the catalog"}, status=404)
        if not rt.ready():
            return self.json({"error": "not ready (starting or rebalancing)"}, status=503)
        now = time.time()
        items = outages_of(svc, rt.services.get(name), now, rt.catalog)
        return self.json(
            {
                "service": name,
                "now": now,
                "sla_period": svc.period.label,
                "sla_start": period_bounds(svc.period, now)[0],
                "outages": [o.to_json() for o in items],
            }
        )

    async def worker(self: Any, request: Any) -> Any:
        consumer: Any = rt.app.consumer if rt.app is not None else None
        status = consumer.status() if hasattr(consumer, "status") else {}
        pipeline = rt.pipeline
        ends = pipeline.segments_end if pipeline is not None else {}
        return self.json({
            "pid": _pid(),
            "ready": rt.ready(),
            "events": rt.counters.events,
            "batches": rt.counters.batches,
            **status,
            "segments_produced": {rt.settings.segments_topic: {str(p): e for p, e in ends.items()}},
            # what this worker forwarded to each re-route partition (delivered)
            "rerouted_produced": {rt.settings.reroute_topic: {
                str(p): e for p, e in (pipeline.forwarded_end if pipeline is not None
                                       else {}).items()}},
        })

    async def status_page(self: Any, request: Any) -> Any:
        from aiohttp.web import Response

        from agents.web.statuspage import HEADERS, PAGE

        return Response(text=PAGE, content_type="text/html", charset="utf-8", headers=HEADERS)

    ingest_slots = asyncio.Semaphore(limits.MAX_CONCURRENT_INGESTS)
    settings = rt.settings
    alertmanager_options: dict[str, Any] = {
        "label": settings.alertmanager_label,
        "alertnames": frozenset(settings.alertmanager_alertnames) or None,
        "pattern": re.compile(settings.alertmanager_pattern) if settings.alertmanager_pattern else None,
    }

    async def ingest(self: Any, request: Any, endpoint: str) -> Any:
        from agents.web.ingest import (
            CONTENT_TYPES,
            PARSE_POOL,
            IngestError,
            parse_alertmanager,
            parse_events_body,
        )

        counts = rt.counters.ingest_requests

        def answer(status: int, body: dict[str, Any]) -> Any:
            counts[(endpoint, status)] = counts.get((endpoint, status), 0) + 1
            return self.json(body, status=status)

        if request.content_type not in CONTENT_TYPES:
            return answer(415, {"error": f"Content-Type must be one of {', '.join(CONTENT_TYPES)}"})
        if (request.content_length or 0) > limits.MAX_BODY_BYTES:
            return answer(413, {"error": f"body larger than the limit of {limits.MAX_BODY_BYTES} bytes"})
        try:
            async with asyncio.timeout(limits.INGEST_QUEUE_TIMEOUT):
                await ingest_slots.acquire()
        except TimeoutError:
            return answer(503, {"error": "too many ingest requests at once; try again"})
        try:
            try:
                async with asyncio.timeout(rt.settings.web_body_timeout):
                    body = await _read_limited(request, limits.MAX_BODY_BYTES)
            except TimeoutError:
                late = answer(408, {"error": "body not received within "
                                             f"{rt.settings.web_body_timeout:g} s"})
                late.force_close()  # the rest of the body is not waited for
                return late
            parse = (functools.partial(parse_alertmanager, body, **alertmanager_options)
                     if endpoint == "alertmanager" else functools.partial(parse_events_body, body))
            batch = await asyncio.get_running_loop().run_in_executor(PARSE_POOL, parse)
            del body
        except IngestError as exc:
            log.info("ingest %s from %s refused (%d): %s", endpoint, request.remote, exc.status,
                     exc.reason)
            return answer(exc.status, {"error": exc.reason})
        finally:
            ingest_slots.release()
        producer = self.app.producer
        # Alerts go to the alerts agent, which owns each component's firing set.
        topic = alerts_topic(rt.settings.app_id) if endpoint == "alertmanager" else rt.settings.events_topic
        try:
            futures = [await producer.send(topic, key, value, None, None, None)
                       for key, value in batch.messages]
            for fut in futures:
                await fut
        except Exception as exc:  # the broker is unreachable or refused: retryable
            log.warning("ingest %s: publishing failed: %r", endpoint, exc)
            return answer(503, {"error": f"could not publish to {topic}: {exc}"})
        done = rt.counters.ingest_events
        done[endpoint] = done.get(endpoint, 0) + len(batch.messages)
        log.info("ingest %s from %s: %d %s published, %d skipped", endpoint, request.remote,
                 len(batch.messages), "alerts" if endpoint == "alertmanager" else "events",
                 batch.skipped)
        return answer(202, {"accepted": len(batch.messages), "skipped": batch.skipped, "topic": topic})

    from faust.web import View

    class IngestEvents(View):
        async def post(self, request: Any) -> Any:
            return await ingest(self, request, "events")

    class IngestAlertmanager(View):
        async def post(self, request: Any) -> Any:
            return await ingest(self, request, "alertmanager")

    # Registered by calls, not decorators: Faust's decorators are untyped.
    app.page("/")(status_page)
    if rt.settings.ingest:  # off: 404, whoever asks
        app.page("/ingest/events")(IngestEvents)
        app.page("/ingest/alertmanager")(IngestAlertmanager)
    app.page("/metrics")(metrics)
    app.page("/healthz")(healthz)
    app.page("/readyz")(readyz)
    app.page("/api/services")(services)
    app.page("/api/worker")(worker)
    from agents.web.reports import install_report_views

    install_report_views(app, rt)
    # table_route forwards the request to the worker that owns the service's partition.
    app.page("/api/services/{name}/outages")(
        app.table_route(table=services_table, match_info="name")(outages)
    )


async def _read_limited(request: Any, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes, also when it comes chunked."""
    from agents.web.limits import LimitError as IngestError

    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"body larger than the limit of {limit} bytes")
        chunks.append(chunk)


def _pid() -> int:
    import os

    return os.getpid()
