"""Build the Faust app of one worker: settings, topics, tables, agents, views, tasks.

Nothing happens at import time (no module-level ``faust.App``): the app is built by
``build_app`` from explicit settings, so several apps with different settings can be
built in one process (tests) and `slawatch --help` never imports Faust.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from agents.exposition.collector import SlawatchCollector, make_registry
from agents.settings import FAUST_TUNING, WorkerSettings
from agents.web.views import install_views
from agents.worker.alerts import install_alerts
from agents.worker.pipeline import Pipeline, install_pipeline
from agents.worker.reload import CatalogReloader
from agents.worker.rollups import TABLE, RollupKeeper
from agents.worker.runtime import Runtime
from agents.worker.topics import Topics, make_topics
from streams.catalog import Catalog

log = logging.getLogger("slawatch.worker")


class Built:
    """What ``build_app`` made, for the worker command and for tests."""

    def __init__(self, app: Any, rt: Runtime, topics: Topics, pipeline: Pipeline,
                 reloader: CatalogReloader) -> None:
        self.app = app
        self.rt = rt
        self.topics = topics
        self.pipeline = pipeline
        self.reloader = reloader


def faust_config(settings: WorkerSettings, on_refused: Any = None) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for these settings."""
    host = settings.web_host
    public = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    conf: dict[str, Any] = {
        "broker": settings.broker,
        "store": settings.store_url,
        "datadir": str(settings.data_dir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "table_standby_replicas": settings.standby_replicas,
        "web_enabled": True,
        "web_host": host,
        "web_bind": host,
        "web_port": settings.web_port,
        "canonical_url": f"{settings.web_scheme}://{public}:{settings.web_port}",
        "web_in_thread": False,
        "autodiscover": False,
        # Faust's own table/graph/stats pages would expose internals on the same port.
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_router_enabled": True,
        **FAUST_TUNING,
    }
    extra = os.environ.get("SLAWATCH_FAUST_SETTINGS")
    if extra:
        # Escape hatch for operators (and measurements): any faust.App setting as JSON.
        conf.update(json.loads(extra))
    credentials = settings.faust_credentials()
    if credentials is not None:
        conf["broker_credentials"] = credentials
    conf.update(web_security_config(settings, on_refused))
    return conf


def web_security_config(settings: WorkerSettings, on_refused: Any = None) -> dict[str, Any]:
    """Faust settings that put the web config, the guard and the limits on the web server.

    Requests a worker forwards to another (``table_route``) keep the caller's
    ``Authorization`` header, and go over TLS with this worker's client context when the
    server is on TLS (Faust takes the scheme of the request it forwards).
    """
    from agents.transport import webserver
    from agents.web import limits
    from agents.web.auth import Authenticator
    from agents.web.guard import make_guard

    config = settings.web_config()
    auth = Authenticator(config, str(settings.ingest_token_file) if settings.ingest_token_file else None)
    peer_ctx = config.peer_ssl_context(settings.web_peer_ca_file)

    def http_client() -> Any:
        import aiohttp

        # Faust's forwarding keeps no timeout of its own: a peer that hangs must not
        # hold the request (and its connection) for ever.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=peer_ctx if peer_ctx is not None else True),
            timeout=aiohttp.ClientTimeout(total=30.0),
        )

    return {
        "web": webserver.register(),
        "web_ssl_context": config.server_ssl_context(),
        "web_application_options": {
            "middlewares": [make_guard(auth, on_refused=on_refused)],
            # aiohttp's keep-alive timer is the header timeout (agents/transport/webserver.py).
            "handler_args": {"keepalive_timeout": settings.web_header_timeout,
                             "lingering_time": min(10.0, settings.web_body_timeout)},
            "client_max_size": limits.MAX_BODY_BYTES,
        },
        "HttpClient": http_client,
    }


def _raw_table(app: Any, settings: WorkerSettings, name: str) -> Any:
    """A table of str keys and bytes values whose keys are stored as plain UTF-8.

    Faust would JSON-quote str keys. Plain keys make the changelog key the service
    (or component) name itself, hashed by murmur2 exactly as the pipeline partitions,
    so Faust's router (``table_route``) finds the owner of a service. The changelog
    topic must be given explicitly: the table registers it at construction.
    """
    changelog = app.topic(
        f"{settings.app_id}-{name}-changelog",
        key_type=str,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
        compacting=True,
        acks=False,
        internal=True,
        maxsize=131_072,
        allow_empty=True,
    )
    table = app.Table(
        name,
        partitions=settings.partitions,
        key_type=str,
        value_type=bytes,
        changelog_topic=changelog,
    )
    # Used by send_changelog and by the store (created lazily at start).
    table.key_serializer = "raw"
    return table


#: How often the worker looks whether its scrapes need preparing (ready again after a
#: start or rebalance, or another catalog).
PREPARE_POLL_SECONDS = 1.0
#: How often a held prepare or refresh looks whether the scrapes being written are done.
SCRAPE_WAIT_SECONDS = 0.02
#: The pipeline is working off a backlog when its batch consumer spent more than this
#: share of the last poll interval not waiting for records (a steady 2,000 events/s:
#: a few per cent).
BACKLOG_SHARE = 0.5
#: Catalogs with more components (or services) than this are not partitioned ahead
#: (``warm_steps``): the partitioner's memo keeps at most twice as many keys.
WARM_KEYS_MAX = 50_000


def warm_steps(catalog: Catalog, component_partition: Callable[[str], int],
               service_partition: Callable[[str], int]) -> Iterator[None]:
    """What stage 1 would otherwise build at the first events of a storm, once per
    catalog component or service, built ahead in steps (the caller may let others run
    at each ``yield``): the reverse index, and the partition of every component and
    service (murmur2 in Python, ~3 us a key: both memos are catalog-sized). At 20,000
    components ~0.15 s of a 200k-event storm's CPU. The worker runs it while it joins
    its group; ``bench/stages.py`` before its timed run."""
    _ = catalog.reverse_index  # a cached property: built here, once
    for part, keys in ((component_partition, list(catalog.components)),
                       (service_partition, list(catalog.services))):
        if len(keys) > WARM_KEYS_MAX:
            continue  # the memo would not keep them all
        for k in range(0, len(keys), 4096):
            for key in keys[k:k + 4096]:
                part(key)
            yield
#: The longest a prepare waits for a backlog to be worked off (s); then it runs
#: alongside, as it would without the wait.
PREPARE_HOLD_MAX = 30.0


class BacklogWatch:
    """Whether the pipeline is working off a backlog: it worked (did not wait for
    records) more than ``BACKLOG_SHARE`` of the last poll interval. ``handled()`` is the
    seconds it worked so far, ``clock()`` a monotonic clock; the verdict is renewed at a
    call once a poll interval has passed since the last renewal (between, the last one
    holds)."""

    def __init__(self, handled: Callable[[], float], clock: Callable[[], float]) -> None:
        self._handled, self._clock = handled, clock
        self._at = (clock(), handled())
        self._busy = False

    def restart(self) -> None:
        """A new first interval from now (say, once ready: what ran before is no guide)."""
        self._at = (self._clock(), self._handled())
        self._busy = False

    def __call__(self) -> bool:
        (t0, ran0), t, ran = self._at, self._clock(), self._handled()
        if t - t0 >= PREPARE_POLL_SECONDS:
            self._busy = ran - ran0 > BACKLOG_SHARE * (t - t0)
            self._at = (t, ran)
        return self._busy


def build_app(settings: WorkerSettings, catalog: Catalog) -> Built:
    import faust

    rt = Runtime(settings, catalog)

    def _refused(request: Any, status: int) -> None:
        # Refused ingest requests are counted like the others (by endpoint and code).
        if request.path.startswith("/ingest/"):
            key = (request.path.rsplit("/", 1)[-1], status)
            counts = rt.counters.ingest_requests
            if key[0] in ("events", "alertmanager"):
                counts[key] = counts.get(key, 0) + 1

    app: Any = faust.App(settings.app_id, **faust_config(settings, _refused))
    from agents.web import limits

    app.slawatch_web_limits = {"max_connections": settings.web_max_connections,
                               "handshake_timeout": limits.HANDSHAKE_TIMEOUT}
    rt.app = app
    topics = make_topics(app, settings)
    rt.topics = topics
    components_table = _raw_table(app, settings, "components")
    services_table = _raw_table(app, settings, "services")
    install_alerts(app, settings, _raw_table(app, settings, "alerts"))
    rt.bind_tables(components_table, services_table)
    pipeline = install_pipeline(app, rt, topics)
    rt.pipeline = pipeline
    rollups = RollupKeeper(rt, _raw_table(app, settings, TABLE))
    pipeline.rollups = rt.rollups = rollups
    registry = make_registry(rt)
    install_views(app, rt, registry, services_table)
    reloader = CatalogReloader(rt)

    async def _declare_outputs() -> None:
        # Output-only topics are not declared by any agent or table.
        await topics.dlq.maybe_declare()

    async def _reload_catalog() -> None:
        import asyncio

        reloader.install_signal_handler(asyncio.get_running_loop())
        await reloader.run(settings.catalog_poll_interval)

    async def _forget(app: Any, revoked: Any, **kwargs: Any) -> None:
        # Nothing is pending here: a batch writes its state before it returns, and the
        # consumer waited for those writes (wait_empty) before this signal. Decoded
        # trackers of partitions that may move are re-validated anyway; dropping them
        # keeps memory bounded to what this worker owns.
        rt.components.forget()
        rt.stats.forget()
        rt.services.forget()
        rollups.forget()

    async def _prepare_scrapes() -> None:
        # The first scrape after a start, a rebalance or a catalog reload would decode
        # every owned tracker and prove which lines stay constant in one go on the
        # event loop (100k components / 10k services: seconds, a stall of the
        # pipeline and a scrape near its timeout). Done here once the worker is
        # ready, a slice at a time between which the loop runs the rest. Later, what
        # batches changed is looked at again (``refresh``) once the pipeline is idle:
        # after a backlog, the first scrape would otherwise redo it all at once.
        # While a backlog is being worked off (a worker started behind its input), the
        # prepare waits for its end (up to PREPARE_HOLD_MAX): the batches would change
        # most of what it proved, so it was mostly work done twice, and it took CPU from
        # the pipeline (a tenth of a 200k-event storm over 20,000 components).
        import asyncio
        import time

        collector: SlawatchCollector = registry.slawatch_collector  # type: ignore[attr-defined]
        done: tuple[Catalog | None, frozenset[int]] = (None, frozenset())

        def versions() -> object:
            # They move at every write of either stage's batches (TrackerTable.versions).
            return (rt.components.versions(), rt.services.versions())

        def worked() -> float:
            # Seconds the batch consumer did not wait for records (its batches and
            # checkpoints), up to now: the clock less its waits, the one going on too.
            t = time.perf_counter()
            stats = getattr(app.consumer, "batch_stats", None)
            if stats is None:
                return 0.0
            since: float = stats.waiting_since
            waited: float = stats.wait_seconds
            return t - waited - (t - since if since else 0.0)

        backlog = BacklogWatch(worked, time.perf_counter)

        async def turn() -> None:
            # Between two steps: the loop's other work, and no step while a scrape's
            # response is being written (its wall time would grow by the step's).
            await asyncio.sleep(0)
            while collector.writing:
                await asyncio.sleep(SCRAPE_WAIT_SECONDS)

        labelled: tuple[Catalog | None, frozenset[int]] = (None, frozenset())
        seen: object = None  # the versions the last pass began at
        last: object = None  # the versions at the last poll
        held: float | None = None  # since when a prepare is due (None: done)
        was_ready = False
        while True:
            await asyncio.sleep(PREPARE_POLL_SECONDS)
            now_versions = versions()
            idle, last = now_versions == last, now_versions
            busy = backlog()
            if not rt.ready():
                was_ready = False
                continue
            if not was_ready:  # ready again: judge the backlog over a poll from now on
                was_ready = True
                backlog.restart()
                continue
            catalog = rt.catalog
            parts = frozenset(rt.owned_partitions())
            if labelled[0] is not catalog or labelled[1] != parts:
                # What reads no tracker is not held by a backlog: events change none of
                # it, and the first scrape after the backlog is spared it.
                for _ in collector.prepare_catalog():
                    await turn()
                if rt.ready() and rt.catalog is catalog:
                    labelled = (catalog, parts)
            if done[0] is catalog and done[1] == parts:
                if now_versions == seen or not idle or busy:
                    continue  # nothing written since, or the pipeline is busy: later
                t0 = time.perf_counter()
                for _ in collector.refresh():
                    await turn()
                    if versions() != now_versions:
                        log.debug("scrape refresh: interrupted by a batch")
                        break  # a batch was written: events go first, the rest later
                else:
                    seen = now_versions
                    log.debug("scrape refresh: done in %.3f s", time.perf_counter() - t0)
                continue
            t = time.monotonic()
            if held is None:
                held = t
            may_wait = t - held < PREPARE_HOLD_MAX
            if busy and may_wait:
                continue
            for _ in collector.prepare():
                await turn()
                if may_wait and backlog():
                    log.debug("scrape prepare: held while a backlog is worked off")
                    break  # begun before the backlog showed: again once it is done
            else:
                if rt.ready() and rt.catalog is catalog:
                    done = (catalog, parts)
                    seen = now_versions
                    held = None

    async def _warm_catalog() -> None:
        # While the worker joins its group (seconds of waiting after the start).
        import asyncio

        for _ in warm_steps(rt.catalog, rt.component_partition, rt.service_partition):
            await asyncio.sleep(0)
        # The catalog's constants the day rollups and the scrapes read (what of the
        # scrapes' preparation needs no partitions; the rest once ready).
        collector: SlawatchCollector = registry.slawatch_collector  # type: ignore[attr-defined]
        for _ in collector.prepare_catalog():
            await asyncio.sleep(0)

    # Registered by calls, not decorators: Faust's decorators are untyped.
    app.task(_warm_catalog)
    app.task(_declare_outputs)
    app.task(_prepare_scrapes)
    app.task(_reload_catalog)
    app.on_partitions_revoked.connect(_forget)

    return Built(app, rt, topics, pipeline, reloader)
