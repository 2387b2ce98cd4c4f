"""`slawatch report`: the SLA report of a calendar month (CONTRACT §7).

Two ways to gather it:

* from the rollups changelog topic (the default): every service's day rollups are on
  the broker, in ``{app_id}-rollups-changelog``, whatever workers run. The report reads
  the topic from its start to its end (no consumer group, nothing committed) and
  computes every service of the catalog: the whole group's answer, also while a worker
  is down or the group rebalances. It needs the catalog the workers run.
* ``--worker URL`` (repeatable): asks each worker's ``GET /api/reports/{period}`` and
  takes the union, each service once; services no worker answered for are named on
  stderr (exit status 3).

Formats: ``table`` (text), ``csv``, ``json`` (the API's object), ``html`` (one
self-contained file a person can mail: see ``agents/cli/reporthtml.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

FORMATS = ("table", "csv", "json", "html")
#: Exit status when some services are missing from the answer.
INCOMPLETE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agents.connection import DEFAULT_BROKER, add_security_arguments, env_value

    parser.add_argument("--period", required=True,
                        help="calendar month YYYY-MM (in each service's zone), or `current`")
    parser.add_argument("--service", action="append", default=[],
                        help="only this service (repeatable)")
    parser.add_argument("--customer", action="append", default=[],
                        help="only the services of this customer (repeatable)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="default %(default)s")
    parser.add_argument("--output", "-o", default="-", help="file to write (default stdout)")
    parser.add_argument("--catalog", default=env_value("SLAWATCH_CATALOG", "config/services.yaml"),
                        help="the workers' catalog (env SLAWATCH_CATALOG, default %(default)s)")
    parser.add_argument("--worker", action="append", default=[], metavar="URL",
                        help="gather from this worker's /api/reports instead of the changelog "
                             "(repeatable: give every worker of the group)")
    g = parser.add_argument_group("Kafka (reading the rollups changelog)")
    g.add_argument("--broker", default=env_value("SLAWATCH_BROKER", DEFAULT_BROKER),
                   help="bootstrap URL(s) (env SLAWATCH_BROKER, default %(default)s)")
    g.add_argument("--app-id", default=env_value("SLAWATCH_APP_ID", "slawatch"),
                   help="the workers' --app-id (env SLAWATCH_APP_ID, default %(default)s)")
    g.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to read the changelog or wait for a worker (default %(default)s)")
    add_security_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from streams.catalog import CatalogError, load_catalog
    from streams.periods import parse_period

    if args.period != "current":
        try:
            parse_period(args.period)
        except ValueError as exc:
            print(f"slawatch report: --period: {exc}", file=sys.stderr)
            return 2
    try:
        catalog = load_catalog(args.catalog)
    except (CatalogError, OSError) as exc:
        print(f"slawatch report: {exc}", file=sys.stderr)
        return 2
    unknown = [s for s in args.service if s not in catalog.services]
    if unknown:
        print(f"slawatch report: --service {', '.join(unknown)}: not in {args.catalog}",
              file=sys.stderr)
        return 2
    from kafka.errors import KafkaError

    now = time.time()
    try:
        if args.worker:
            body = gather_workers(args.worker, args.period, args.timeout)
        else:
            body = from_changelog(args, catalog, now)
    except (OSError, RuntimeError, KafkaError) as exc:
        where = ", ".join(args.worker) if args.worker else args.broker
        print(f"slawatch report: cannot gather the report from {where}: {exc}", file=sys.stderr)
        return 1
    wanted = select(catalog, args.service, args.customer)
    body["services"] = [s for s in body["services"] if s["service"] in wanted]
    body["missing"] = sorted(set(body.get("missing", ())) & wanted)
    text = render(body, args.format)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    if body["missing"]:
        print(f"slawatch report: no answer for {len(body['missing'])} service(s): "
              f"{', '.join(body['missing'])}", file=sys.stderr)
        return INCOMPLETE
    return 0


def select(catalog: Any, services: Sequence[str], customers: Sequence[str]) -> set[str]:
    names = set(catalog.services)
    if services:
        names &= set(services)
    if customers:
        names = {n for n in names if set(catalog.services[n].customers) & set(customers)}
    return names


def render(body: dict[str, Any], fmt: str) -> str:
    from agents.cli import reporthtml

    if fmt == "json":
        return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        return reporthtml.csv_text(body)
    if fmt == "html":
        return reporthtml.html(body)
    return reporthtml.table_text(body)


# -- gathering from the changelog --------------------------------------------------------


def read_changelog(config: dict[str, Any], topic: str, timeout: float) -> tuple[dict[str, bytes], int]:
    """The latest value of every key of ``topic`` (tombstones drop the key), read from
    the start of every partition to its end; and the number of partitions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False,
                             key_deserializer=None, value_deserializer=None,
                             consumer_timeout_ms=int(timeout * 1000),
                             bootstrap_timeout_ms=int(timeout * 1000), **config)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"topic {topic} not found: no worker with this --app-id has "
                               "written rollups yet (or wrong --broker/--app-id)")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        data: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout
        pending = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        drained = False
        while pending or not drained:
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {topic} timed out after {timeout:.0f} s")
            polled = consumer.poll(timeout_ms=500 if pending else 200)
            for records in polled.values():
                for rec in records:
                    key = rec.key.decode() if isinstance(rec.key, bytes) else str(rec.key)
                    if rec.value is None:
                        data.pop(key, None)
                    else:
                        data[key] = rec.value
            # tansu reports a partition's end as its last record batch's first offset + 1,
            # and a poll hands out at most max_poll_records of a fetched batch: past the
            # reported ends, polling goes on until a poll brings nothing.
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
            drained = not pending and not polled
        return data, len(tps)
    finally:
        consumer.close()


class _Stored:
    """The ``.data`` a ``TrackerTable`` reads (a dict), for values stored in parts."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data


def from_changelog(args: argparse.Namespace, catalog: Any, now: float) -> dict[str, Any]:
    from agents.connection import KafkaConnection
    from agents.worker.rollups import changelog_topic
    from agents.worker.state import TrackerTable
    from streams.periods import service_accounting, service_info
    from streams.rollups import RollupBook, decode, encode

    kafka = KafkaConnection.from_args(args)
    problems = kafka.validate()
    if problems:
        raise RuntimeError("; ".join(problems))
    data, _ = read_changelog(kafka.client_config(), changelog_topic(args.app_id), args.timeout)
    table: Any = TrackerTable(_Stored(data), decode, encode)

    class Store:
        def get(self, key: str) -> Any:
            return table.get(key)

        def put(self, service: str, key: str, value: Any) -> None:
            raise AssertionError("the report only reads")

    book = RollupBook(Store(), lambda name: service_accounting(catalog, name),
                      lambda name: service_info(catalog, name))
    return report_body(book, catalog, args.period, now)


def report_body(book: Any, catalog: Any, period: str, now: float) -> dict[str, Any]:
    from agents.web.reports import resolve_period

    out = []
    for name in sorted(catalog.services):
        zone = book.accounting(name).zone
        report = book.report(name, resolve_period(period, zone, now), now)
        if report is not None:
            out.append(report.to_json())
    return {"period": resolve_period(period, "UTC", now), "now": now, "complete": True,
            "missing": [], "services": out}


# -- gathering from the workers --------------------------------------------------------


def gather_workers(urls: Sequence[str], period: str, timeout: float) -> dict[str, Any]:
    """The union of the workers' answers; services none answered for in ``missing``."""
    services: dict[str, Any] = {}
    missing: set[str] | None = None
    resolved = period
    now = None
    failed = []
    unmapped: dict[str, Any] = {"distinct": 0, "events": 0, "top": []}
    for url in urls:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/reports/{period}",
                                        timeout=timeout) as resp:
                body = orjson.loads(resp.read())
        except (OSError, urllib.error.URLError, ValueError) as exc:
            failed.append(f"{url}: {exc}")
            continue
        resolved = body.get("period", resolved)
        now = body.get("now", now)
        for svc in body.get("services", ()):
            services.setdefault(svc["service"], svc)
        u = body.get("unmapped")
        if u is not None:
            unmapped["distinct"] += u["distinct"]
            unmapped["events"] += u["events"]
            unmapped["top"] += u["top"]
        others = set(body.get("missing", ()))
        missing = others if missing is None else missing & others
    for line in failed:
        print(f"slawatch report: no answer from {line}", file=sys.stderr)
    if missing is None:
        raise RuntimeError("no worker answered")
    # Each worker's top comes from its own input partitions: disjoint ids.
    unmapped["top"] = sorted(unmapped["top"], key=lambda r: (-r["events"], r["component"]))[:100]
    return {"period": resolved, "now": now, "complete": not (missing - set(services)),
            "missing": sorted(missing - set(services)),
            "services": [services[n] for n in sorted(services)], "unmapped": unmapped}
