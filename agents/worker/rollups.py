"""Durable day rollups of the services (CONTRACT §7) in a Faust table with a changelog.

Stage 2 marks a service dirty from the earliest segment start of each batch it applied
(one ``min`` per service and batch); at the services checkpoint, before the trackers are
written (and pruned), ``RollupKeeper.checkpoint`` recomputes the dirty days from the
trackers and writes the months that changed to the ``rollups`` table: to its store and
its compacted changelog topic ``{app_id}-rollups-changelog``, in the service's own
partition, so the rollups move with the service in a rebalance and are recovered with it.
The input's offsets are committed only once these writes are on the broker, like every
table write of the checkpoint.

The changelog is also what ``slawatch report`` reads: every service of the group, from
the topic alone, whatever workers run.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Container, Iterable
from typing import Any

from agents.worker import segwire
from agents.worker.runtime import Runtime
from agents.worker.state import CHUNKED, Send, SendMany, TrackerTable, compact_value
from streams.periods import (
    Accounting,
    PeriodReport,
    ServiceInfo,
    month_bounds,
    period_label,
    service_accounting,
    service_info,
)
from streams.record import is_record
from streams.rollups import RollupBook, Stored, decode, encode

log = logging.getLogger("slawatch.rollups")

TABLE = "rollups"


def changelog_topic(app_id: str) -> str:
    return f"{app_id}-{TABLE}-changelog"


class TableStore:
    """``streams.rollups.RollupStore`` over a ``TrackerTable``: writes go to the partition
    of the service they belong to."""

    def __init__(self, table: TrackerTable[Stored], rt: Runtime) -> None:
        self.table = table
        self.rt = rt

    def get(self, key: str) -> Stored | None:
        return self.table.get(key)

    def put(self, service: str, key: str, value: Stored) -> None:
        self.table.put(key, value, self.rt.service_partition(service))


class ReadStore(TableStore):
    """``TableStore`` for reports: what is not decoded already is decoded without being
    kept, so reading a year of days leaves the worker's memory as it was."""

    def get(self, key: str) -> Stored | None:
        table = self.table
        if key in table._cache or key in table._dirty:
            return table.get(key)
        raw = table.table.data.get(key)
        if raw is None:
            return None
        if raw.startswith(CHUNKED):
            return table.get(key)  # in parts: joined (and kept) by the table
        return decode(raw)


def _encode(value: Stored) -> bytes:
    """``encode``, in a buffer of the value's size: the table keeps every service's
    meta, month and running day, and what orjson returns for a value of a few hundred
    bytes holds a block of 4 KiB (``compact_value``; 10,000 services: ~120 MB). A
    record (a day with runs) is joined into a buffer of its size already: copied again
    it cost a fresh block's page faults per running day written (~10 us at 20 KB)."""
    raw = encode(value)
    return raw if is_record(raw) else compact_value(raw)


class RollupKeeper:
    """The worker's rollup book and its table."""

    def __init__(self, rt: Runtime, table: Any) -> None:
        self.rt = rt
        self.table: TrackerTable[Stored] = TrackerTable(table, decode, _encode)
        self._catalog: Any = None
        self._known: dict[str, tuple[Accounting, ServiceInfo | None]] = {}
        self.book = RollupBook(TableStore(self.table, rt), self.accounting, self.info)
        self.reader = RollupBook(ReadStore(self.table, rt), self.accounting, self.info)

    def accounting(self, service: str) -> Accounting:
        return self._of_catalog(service)[0]

    def info(self, service: str) -> ServiceInfo | None:
        return self._of_catalog(service)[1]

    def _of_catalog(self, service: str) -> tuple[Accounting, ServiceInfo | None]:
        """The service's accounting and info under the current catalog, made once per
        catalog: every services checkpoint of a storm asks them of every service it
        changed (its components sorted, its supported availability, its calendar)."""
        catalog = self.rt.catalog
        if catalog is not self._catalog:
            self._catalog, self._known = catalog, {}
        got = self._known.get(service)
        if got is None:
            got = self._known[service] = (service_accounting(catalog, service),
                                          service_info(catalog, service))
        return got

    def mark(self, service: str, starts: Any) -> None:
        if starts:
            self.book.mark(service, min(starts))

    def mark_columns(self, items: Iterable[tuple[str, segwire.Columns]],
                     skip: Container[str] = ()) -> None:
        """``mark`` of each service's segment starts, but those in ``skip``."""
        mark = self.book.mark
        earliest = segwire.earliest
        for name, cols in items:
            if name in skip:
                continue
            first = earliest(cols)
            if first is not None:
                mark(name, first)

    def update(self, limit: int | None = None) -> bool:
        """Recompute the dirty days of every marked service (written by ``flush``), or
        of the first ``limit`` of them; whether none is left marked."""
        book = self.book
        dropped = book.dropped
        if book.dirty:
            now = time.time()
            services = self.rt.services
            names = list(book.dirty if limit is None else itertools.islice(book.dirty, limit))
            for name in names:
                tracker = services.get(name)
                if tracker is None:
                    book.dirty.pop(name, None)
                    continue
                try:
                    book.update(name, tracker, tracker.frontier, now)
                except Exception:  # a report must never stop the pipeline
                    book.dirty.pop(name, None)
                    log.exception("rollups of %s not updated", name)
        if book.dropped > dropped:
            log.warning("%d change(s) older than their service's kept history are not in "
                        "the day rollups (%d so far): input partitions far apart in event "
                        "time?", book.dropped - dropped, book.dropped)
        return not book.dirty

    async def flush(self, send: Send, send_many: SendMany | None = None) -> list[Any]:
        """Write the changed months and horizons; the send futures."""
        return await self.table.flush(send, send_many=send_many)

    def catalog_changed(self) -> None:
        """A reloaded catalog may count seconds otherwise (a service time, a maintenance
        window): the running month of every owned service is recomputed at the next
        services checkpoint, as ``/metrics`` re-evaluates it. Closed months keep the
        numbers they were closed with."""
        now = time.time()
        for name in self.rt.owned_services():
            zone = self.accounting(name).zone
            self.book.mark(name, month_bounds(period_label(now, zone), zone)[0])

    def prune_cut(self, service: str, cut: float, tracker: Any = None) -> float:
        return self.book.prune_cut(service, cut, tracker)

    def report(self, service: str, period: str, now: float) -> PeriodReport | None:
        return self.reader.report(service, period, now)

    def forget(self) -> None:
        self.table.forget()
