"""Period reports through the real broker and worker, against the brute-force reference.

Six weeks of history (October and the start of November 2026, more than 32 days ago
for October: the engine prunes it) are published out of order within the allowed
lateness, with duplicates and late events. The October and November reports must
equal the reference's brute force over the whole month: from ``GET /api/reports``, from
``slawatch report`` reading the rollups changelog, and from ``slawatch report --worker``;
and again after a SIGKILL, a restart that prunes the trackers' October history (checked
in the services changelog), and more events.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agents.worker.state import TrackerTable, decode_service, encode_service
from streams.service import ServiceTracker
from tests import reference as ref
from tests.fake_tables import Table
from tests.fixtures_kafka import (
    EXAMPLE_CATALOG,
    ROOT,
    event_bytes,
    publish_messages,
    read_topic,
    start_broker,
    wait_counted,
)
from tests.unit.streams.test_periods import compare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The example catalog with CONTRACT §6: e-mail agreed in Berlin business hours (its
#: months and days in Berlin time, DST ending on 2026-10-25), a holiday, weekly patching
#: of the mail servers and a one-off window for the whole service.
CALENDAR_CATALOG = EXAMPLE_CATALOG.replace(
    "    sla: {target: 0.999, period: 30d}\n    restore_time: 2h",
    "    sla: {target: 0.999, period: month, service_time: business-hours}\n    restore_time: 2h",
) + """service_times:
  business-hours:
    timezone: Europe/Berlin
    weekly: ["Mon-Fri 08:00-18:00"]
    except: ["2026-10-26"]
maintenance:
  - name: mail-patching
    components: [mail-srv-01, mail-srv-02]
    weekly: ["Sun 02:00-04:00", "Wed 09:00-10:00"]
    timezone: Europe/Berlin
  - name: core-switch-swap
    services: [email]
    start: "2026-10-14T10:00:00Z"
    end: "2026-10-14T13:00:00Z"
"""
assert "service_time: business-hours" in CALENDAR_CATALOG

OCT = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
COMPONENTS = ["mail-srv-01", "mail-srv-02", "core-sw-1", "dns-1", "dns-2", "mx-1", "mx-2", "mx-3"]


def history(seed: int, start: float, end: float) -> list[ref.Ev]:
    """Outages of every component, in arrival order: shuffled within 500 s, some events
    re-sent (duplicates) and a few 2,000 s behind their component (late)."""
    rnd = random.Random(seed)
    events: list[ref.Ev] = []
    for comp in COMPONENTS:
        t = start
        while True:
            t += rnd.expovariate(1 / (2 * 86400))
            if t >= end:
                break
            state = rnd.choice([ref.DOWN, ref.DOWN, ref.MAINTENANCE])
            events.append(ref.Ev(comp, state, round(t, 3)))
            events.append(ref.Ev(comp, ref.UP, round(t + rnd.expovariate(1 / 5400), 3)))
    # Components no service lists, some much chattier than others.
    for k, ghost in enumerate(("ghost-a", "ghost-b", "ghost-c", "ghost-d")):
        for _ in range(40 // (k + 1)):
            events.append(ref.Ev(ghost, rnd.choice([ref.UP, ref.DOWN]), round(rnd.uniform(start, end), 3)))
    keyed = sorted(events, key=lambda e: e.ts + rnd.uniform(0, 500))
    out: list[ref.Ev] = []
    for e in keyed:
        out.append(e)
        roll = rnd.random()
        if roll < 0.05:
            out.append(e)  # re-sent
        elif roll < 0.08:
            out.append(ref.Ev(e.component, ref.DOWN, e.ts - 2000))  # late
    return out


def messages(events: list[ref.Ev]) -> list[tuple[bytes, bytes, None]]:
    return [(e.component.encode(), event_bytes(e.component, e.state, e.ts), None) for e in events]


def expected(arrivals: list[ref.Ev], period: str, now: float, catalog: str = EXAMPLE_CATALOG
             ) -> dict[str, ref.RefPeriodReport]:
    rcat = ref.RefCatalog.from_dict(yaml.safe_load(catalog))
    _, applied = ref.classify(rcat, arrivals, 600.0)
    steps = ref.StepFunctions(applied)
    return {name: ref.period_report(rcat, steps, name, period, now) for name in rcat.services}


class _Report:
    """A report's JSON seen through the interface ``test_periods.compare`` reads."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def to_json(self) -> dict[str, Any]:
        return self.obj


def problems_of(body: dict[str, Any], arrivals: list[ref.Ev], period: str,
                catalog: str = EXAMPLE_CATALOG) -> list[str]:
    want = expected(arrivals, period, time.time(), catalog)
    got = {s["service"]: s for s in body["services"]}
    if set(got) != set(want):
        return [f"services: got {sorted(got)}, want {sorted(want)}"]
    out = []
    for name, w in want.items():
        out += [f"{name}: {p}" for p in compare(_Report(got[name]), w)]
    return out


def wait_api(worker: Any, arrivals: list[ref.Ev], period: str, catalog: str,
             timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    problems = ["no answer"]
    while time.monotonic() < deadline:
        status, raw = worker.get(f"/api/reports/{period}")
        if status == 200:
            body = orjson.loads(raw)
            problems = problems_of(body, arrivals, period, catalog)
            if not problems and body["complete"]:
                return dict(body)
        else:
            problems = [f"HTTP {status}: {raw[:200]!r}"]
        time.sleep(1.0)
    raise AssertionError(f"/api/reports/{period} never matched:\n  " + "\n  ".join(problems[:20])
                         + "\n" + worker.log_tail(30))


def _numbers(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A report's numbers (not whether or when it was revised), rounded to 1 µs."""
    def rounded(x: Any) -> Any:
        if isinstance(x, float):
            return round(x, 6)
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rounded(v) for v in x]
        return x

    return [rounded({k: v for k, v in svc.items() if k not in ("revision", "revised_at")})
            for svc in body["services"]]


def cli(broker: Any, catalog: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "report", "--broker", broker.url,
         "--app-id", "slawatch-test", "--catalog", str(catalog), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def service_history_starts(broker: Any) -> dict[str, list[float]]:
    """Per service, the point times of its timeline in the newest services-table value."""
    records = read_topic(broker, "slawatch-test-services-changelog", 10**9, timeout=5.0)
    latest: dict[str, bytes] = {}
    for rec in records:  # what a recovery rebuilds: the last value per key
        key = rec.key.decode()
        if rec.value is None:
            latest.pop(key, None)
        else:
            latest[key] = rec.value
    stored = Table()
    stored.data.update(latest)
    table = TrackerTable(stored, decode_service, encode_service, ServiceTracker.to_record,
                         ServiceTracker.from_record)
    out: dict[str, list[float]] = {}
    for key in [k for k in latest if "\x1f" not in k]:
        tracker = table.get(key)
        assert tracker is not None
        out[key] = list(tracker.timeline.ts)
    return out


@pytest.mark.parametrize(("store", "catalog_text"), [
    ("memory", EXAMPLE_CATALOG),
    ("rocksdb", CALENDAR_CATALOG),
], ids=["memory-24x7", "rocksdb-calendars"])
def test_month_reports_survive_sigkill_and_pruning(tmp_path: Path, worker_factory: Any, store: str,
                                                   catalog_text: str) -> None:
    broker = start_broker(tmp_path, 4)
    try:
        catalog = tmp_path / "services.yaml"
        catalog.write_text(catalog_text)
        first = history(16, OCT - 2 * 86400, NOV + 9 * 86400)
        publish_messages(broker, messages(first))
        worker = worker_factory(broker, catalog, extra=["--store", store])
        worker.wait_ready(timeout=60)
        wait_counted(worker, len(first), timeout=90)
        oct_body = wait_api(worker, first, "2026-10", catalog_text)
        assert any(s["outages"] for s in oct_body["services"]), "a history without outages"
        wait_api(worker, first, "2026-11", catalog_text)

        # The changelog alone gives the same report, without asking any worker.
        done = cli(broker, catalog, "--period", "2026-10", "--format", "json")
        assert done.returncode == 0, done.stderr
        assert not problems_of(orjson.loads(done.stdout), first, "2026-10", catalog_text)
        done = cli(broker, catalog, "--period", "2026-10", "--format", "json", "--worker", worker.url)
        assert done.returncode == 0, done.stderr
        assert not problems_of(orjson.loads(done.stdout), first, "2026-10", catalog_text)

        worker.stop(signal.SIGKILL)
        # The group is down: the changelog still answers for every service.
        done = cli(broker, catalog, "--period", "2026-10", "--format", "csv")
        assert done.returncode == 0, done.stderr
        assert {line.split(",")[0] for line in done.stdout.splitlines()[1:]} == {"dns", "email"}

        # More history, the trackers written again: a new process prunes what no window
        # reads any more (October is more than 32 days old).
        second = history(17, time.time() - 2 * 86400, time.time() - 3600)  # live again
        publish_messages(broker, messages(second))
        worker.start()
        worker.wait_ready(timeout=60)
        arrivals = first + second
        wait_counted(worker, len(arrivals), timeout=90)
        wait_api(worker, arrivals, "2026-10", catalog_text)
        wait_api(worker, arrivals, "2026-11", catalog_text)
        # The unrecognized components, by events, each message counted once.
        rcat = ref.RefCatalog.from_dict(yaml.safe_load(catalog_text))
        outcomes, _ = ref.classify(rcat, arrivals, 600.0)
        ghosts = Counter(e.component for e, o in zip(arrivals, outcomes, strict=True) if o == "unmapped")
        status, raw = worker.get("/api/unmapped")
        assert status == 200, raw
        unmapped = orjson.loads(raw)
        assert {r["component"]: r["events"] for r in unmapped["top"]} == dict(ghosts)
        assert [r["component"] for r in unmapped["top"]] == [c for c, _ in ghosts.most_common()]
        assert unmapped["distinct"] == len(ghosts) and unmapped["events"] == sum(ghosts.values())

        deadline = time.monotonic() + 30
        while True:
            starts = service_history_starts(broker)
            pruned = {name: sum(1 for t in ts if t < NOV) <= 1 for name, ts in starts.items()}
            if pruned and all(pruned.values()):
                break
            assert time.monotonic() < deadline, f"October never pruned: {pruned}"
            time.sleep(1.0)
        done = cli(broker, catalog, "--period", "2026-10", "--format", "json")
        assert done.returncode == 0, done.stderr
        assert not problems_of(orjson.loads(done.stdout), arrivals, "2026-10", catalog_text)
        done = cli(broker, catalog, "--period", "current")
        assert done.returncode == 0 and "email" in done.stdout and "dns" in done.stdout, done

        # A backfill: the same input again, all of it old by now, into a fresh app id on
        # a fresh broker (the segments topic is not named after the app id), builds the
        # same months.
        live = {p: wait_api(worker, arrivals, p, catalog_text) for p in ("2026-10", "2026-11")}
        (tmp_path / "backfill").mkdir()
        broker2 = start_broker(tmp_path / "backfill", 4)
        try:
            publish_messages(broker2, messages(arrivals))
            fresh = worker_factory(broker2, catalog, name="backfill", app_id="slawatch-backfill",
                                   extra=["--store", store])
            fresh.wait_ready(timeout=60)
            wait_counted(fresh, len(arrivals), timeout=90)
            for period, body in live.items():
                again = wait_api(fresh, arrivals, period, catalog_text)
                assert _numbers(again) == _numbers(body), period
        finally:
            broker2.stop()
    finally:
        broker.stop()


def test_a_group_answers_for_every_service_and_a_leaving_worker_loses_nothing(
        tmp_path: Path, worker_factory: Any) -> None:
    """Two workers share the services: gathered from both, the report is whole and
    exact; one leaves, the other takes its partitions (the rollups come with them from
    the changelog) and answers for all of them, the same numbers.

    The history is published once both run: a worker joining a month of backlog late
    leaves its input partitions weeks behind the other's in event time, and a
    component's first segments that far behind its services' pruned history are not in
    the rollups (docs/reports.md, "Backfills and pruning")."""
    from tests.fixtures_kafka import wide_catalog

    broker = start_broker(tmp_path, 4)
    try:
        text = wide_catalog(8)
        catalog = tmp_path / "services.yaml"
        catalog.write_text(text)
        comps = [c for c in yaml.safe_load(text)["components"]]
        rnd = random.Random(5)
        events: list[ref.Ev] = []
        for comp in comps:
            t = OCT - 86400
            while (t := t + rnd.expovariate(1 / (3 * 86400))) < NOV + 2 * 86400:
                events.append(ref.Ev(comp, ref.DOWN, round(t, 3)))
                events.append(ref.Ev(comp, ref.UP, round(t + rnd.expovariate(1 / 7200), 3)))
        events.sort(key=lambda e: e.ts)
        w1 = worker_factory(broker, catalog, name="a")
        w1.wait_ready(timeout=60)
        w2 = worker_factory(broker, catalog, name="b")
        w2.wait_ready(timeout=60)
        deadline = time.monotonic() + 60
        while not all(orjson.loads(w.get("/api/reports/2026-10")[1]).get("services")
                      for w in (w1, w2)):
            assert time.monotonic() < deadline, "the two workers never shared the services"
            time.sleep(1)
        publish_messages(broker, messages(events))

        def gathered(*workers: Any) -> list[str]:
            urls = [a for w in workers for a in ("--worker", w.url)]
            done = cli(broker, catalog, "--period", "2026-10", "--format", "json", *urls)
            if done.returncode != 0:
                return [f"exit {done.returncode}: {done.stderr[-300:]}"]
            return problems_of(orjson.loads(done.stdout), events, "2026-10", text)

        deadline = time.monotonic() + 90
        while (problems := gathered(w1, w2)) and time.monotonic() < deadline:
            time.sleep(2)
        assert not problems, problems[:10]
        status, raw = w1.get("/api/reports/2026-10")
        assert status == 200 and not orjson.loads(raw)["complete"], "one worker owned all"

        assert w2.stop(signal.SIGTERM) == 0
        deadline = time.monotonic() + 90
        while (problems := gathered(w1)) and time.monotonic() < deadline:
            time.sleep(2)
        assert not problems, problems[:10]
    finally:
        broker.stop()
