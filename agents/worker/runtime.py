"""The state one worker process shares between its agents, web views and reload task.

Kept apart from the Faust app so the pieces that read it (collector, views, reload)
can be written and type-checked against a small surface: the catalog in force, the
trackers (via ``TrackerTable``), which partitions this worker actively owns, and a few
process-local counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.settings import WorkerSettings
from agents.worker.partitioning import Partitioner
from agents.worker.state import (
    PartitionStats,
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
    encode_stats,
    stats_key,
)
from streams.catalog import Catalog
from streams.component import OUTCOMES, ComponentTracker
from streams.report import Report, component_report, service_report
from streams.service import ServiceTracker
from streams.windows import retention_for

log = logging.getLogger("slawatch.worker")


@dataclass
class Counters:
    """Process-local counters (not per partition): they describe this worker."""

    catalog_reloads: int = 0
    catalog_reload_errors: int = 0
    catalog_loaded_at: float = field(default_factory=time.time)
    rerouted: int = 0
    rewound: int = 0  # input offsets seen again in this process (redelivery)
    batches: int = 0
    events: int = 0
    # HTTP ingestion: requests by (endpoint, HTTP status) and events published by endpoint.
    ingest_requests: dict[tuple[str, int], int] = field(default_factory=dict)
    ingest_events: dict[str, int] = field(default_factory=dict)


def component_table(table: Any) -> TrackerTable[ComponentTracker]:
    """The component trackers over a Faust table (or a stand-in with its interface): as
    records with their columns packed, a small tracker stored whole."""
    return TrackerTable(table, decode_component, encode_component, ComponentTracker.to_record,
                        ComponentTracker.from_record, ComponentTracker.small_records)


def service_table(table: Any) -> TrackerTable[ServiceTracker]:
    """The service trackers over a Faust table (or a stand-in): as records with their
    columns packed."""
    return TrackerTable(table, decode_service, encode_service, ServiceTracker.to_record,
                        ServiceTracker.from_record)


class Runtime:
    """Catalog + tables + ownership for one worker; built by ``app.build_app``."""

    def __init__(self, settings: WorkerSettings, catalog: Catalog) -> None:
        self.settings = settings
        self._catalog = catalog
        self.retention = retention_for([s.period for s in catalog.services.values()])
        self.component_partition = Partitioner(settings.partitions)
        self.service_partition = Partitioner(settings.partitions)
        self.counters = Counters()
        self.lock = threading.Lock()
        self.app: Any = None
        self.components: TrackerTable[ComponentTracker]
        self.stats: TrackerTable[PartitionStats]
        self.services: TrackerTable[ServiceTracker]
        self.topics: Any = None
        self.pipeline: Any = None  # the Pipeline, once built (for /api/worker)
        self.rollups: Any = None  # the RollupKeeper (agents/worker/rollups.py), once built
        #: Why the worker refuses to go on (a setup it cannot work with), once it does:
        #: the command prints it and exits with the configuration error status.
        self.refused: str | None = None
        #: /metrics responses being written (agents/web/metrics.py): a services
        #: checkpoint holds its day rollups meanwhile (``Pipeline.checkpoint_services``).
        self.scrapes_writing = 0
        self._owned_memo: dict[str, tuple[Any, Catalog, list[str]]] = {}

    def bind_tables(self, components_table: Any, services_table: Any) -> None:
        self.components = component_table(components_table)
        self.stats = TrackerTable(components_table, PartitionStats.from_bytes, encode_stats)
        self.services = service_table(services_table)

    # -- catalog ---------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def set_catalog(self, catalog: Catalog) -> None:
        """Swap in a reloaded catalog: history stays, new requirements apply from now.

        Decoded service trackers are re-bound to their new models (the bound state is
        derived, so nothing needs writing); trackers decoded later bind on first use.
        """
        self._catalog = catalog
        self.retention = retention_for([s.period for s in catalog.services.values()])
        for key, (_, tracker) in list(self.services._cache.items()):
            model = catalog.models.get(key)
            if model is not None:
                tracker.bind(model)
        if self.rollups is not None:
            self.rollups.catalog_changed()
        self.counters.catalog_reloads += 1
        self.counters.catalog_loaded_at = time.time()

    # -- ownership -------------------------------------------------------------------

    def active_partitions(self, topic: str) -> set[int]:
        """Partitions of ``topic`` this worker actively owns (never its standbys).

        None while a rebalance is in progress: a newly assigned partition's tables are
        still being recovered (older than what the previous owner exported, so counters
        in the union would go down), and a revoked one is someone else's. Missing for
        the length of a rebalance is what a scraper can tell apart; wrong is not.
        """
        app = self.app
        if app is None or app.rebalancing:
            return set()
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}

    def owned_partitions(self, rebalancing_ok: bool = False) -> set[int]:
        """Table partitions this worker actively owns: those of the re-route topic,
        which is co-partitioned with the components table whatever the input topic
        looks like (``agents/routing.py``)."""
        topic = self.settings.reroute_topic
        if rebalancing_ok and self.app is not None:
            return {tp.partition for tp in self.app.assignor.assigned_actives()
                    if tp.topic == topic}
        return self.active_partitions(topic)

    def ready(self) -> bool:
        """Assigned, recovered, sought (the routing of the input decided, a
        predecessor's DLQ records read) and not rebalancing: the tables are the truth
        and what is published from now on is counted."""
        app = self.app
        if app is None or app.rebalancing:
            return False
        recovery = app.tables.recovery
        if not recovery.completed.is_set():
            return False
        sought = getattr(app.consumer, "sought", None)
        if sought is not None and not sought.is_set():
            return False
        return bool(app.assignor.assigned_actives())

    def owned_services(self) -> list[str]:
        parts = self.active_partitions(self.settings.segments_topic)
        part = self.service_partition
        return [name for name in self._catalog.services if part(name) in parts]

    def owned_components(self) -> list[str]:
        parts = self.owned_partitions()
        part = self.component_partition
        return [cid for cid in self._catalog.components if part(cid) in parts]

    def owned_sorted(self, kind: str) -> list[str]:
        """``owned_services()`` or ``owned_components()`` (``kind``) in sorted order,
        remembered while the catalog and the partitions owned stay the same (the
        collector's order; 100,000 ids cost ~0.1 s to select and sort)."""
        parts = frozenset(self.active_partitions(self.settings.segments_topic)
                          if kind == "services" else self.owned_partitions())
        key = (id(self._catalog), parts)
        memo = self._owned_memo.get(kind)
        if memo is not None and memo[0] == key and memo[1] is self._catalog:
            return memo[2]
        names = sorted(self.owned_services() if kind == "services" else self.owned_components())
        self._owned_memo[kind] = (key, self._catalog, names)
        return names

    def owned_stats(self) -> list[PartitionStats]:
        out = []
        for p in sorted(self.owned_partitions()):
            stats = self.stats.get(stats_key(p))
            if stats is not None:
                out.append(stats)
        return out

    # -- reports ---------------------------------------------------------------------

    def report(self, now: float, services: Iterable[str] | None = None,
               components: bool = True) -> Report:
        """The engine's Report for what this worker owns (``services`` to narrow it;
        without components when ``components`` is false: the collector renders them
        itself, see ``collector.ComponentLines``)."""
        catalog = self._catalog
        report = Report(now=now)
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        unmapped = 0
        for stats in self.owned_stats():
            for k, v in stats.counts.items():
                counts[k] = counts.get(k, 0) + v
            unmapped += stats.unmapped.count()
        report.events_total = counts
        report.unmapped_components = unmapped
        names = self.owned_services() if services is None else list(services)
        for name in names:
            svc = catalog.services.get(name)
            if svc is not None:
                report.services[name] = service_report(svc, self.services.get(name), catalog, now)
        if services is None and components:
            for cid in self.owned_components():
                report.components[cid] = component_report(
                    catalog.components[cid], self.components.get(cid), now,
                    catalog.component_windows.get(cid, ()),
                )
        return report
