"""Rebalance under load: a second worker joins, later leaves, while events flow.

A sampler thread scrapes both workers' /metrics every 0.25 s for the whole run and
records, per scrape, which services the union covers and which series two workers
exported at once. Afterwards:

* no series is ever exported by both workers (each series once, even mid-rebalance);
* services are missing from the union only inside the two rebalance windows, and for at
  most ``MAX_GAP`` seconds each time (the measured figures are printed);
* no message is counted twice (sum of slawatch_events_total over the union);
* every message is counted, and at the quiet points (after the join, after the leave)
  the union equals the engine fed the same messages, series by series. Counter steps
  back (a late segment merging two outages) are printed; they are the documented price
  of order-independent numbers.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kafka import (
    WorkerProcess,
    counted,
    reference_engine,
    scenario,
    start_broker,
    union_scrape,
    wide_catalog,
)
from tests.reliability_helpers import RatePublisher, service_names, wait_equal, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = 12
COMPONENTS = [f"app-{i}-{x}" for i in range(SERVICES) for x in "ab"] + ["shared-db"]
#: Longest time any service may be missing from the union during one rebalance.
MAX_GAP = 30.0
COUNTERS = ("slawatch_service_outages_total", "slawatch_service_downtime_seconds_total")


@dataclass
class Sampler:
    workers: list[WorkerProcess]
    expected: set[str]
    interval: float = 0.25
    samples: list[tuple[float, set[str], int]] = field(default_factory=list)  # t, covered, #dups
    dups: list[tuple[float, Any]] = field(default_factory=list)
    decreases: list[str] = field(default_factory=list)
    _last: dict[Any, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True, name="sampler")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            union, dups = union_scrape(self.workers, timeout=2.0)
            covered = service_names(union)
            self.samples.append((t, covered, len(dups)))
            self.dups += [(t, d) for d in dups]
            for k, v in union.items():
                if k[0] in COUNTERS:
                    last = self._last.get(k)
                    if last is not None and v < last - 1e-6:
                        self.decreases.append(f"{k}: {last} -> {v}")
                    self._last[k] = v
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def gaps(self, start: float, end: float) -> list[tuple[float, float]]:
        """Intervals within [start, end] where some expected service was missing."""
        out: list[tuple[float, float]] = []
        begin: float | None = None
        for t, covered, _ in self.samples:
            if t < start or t > end:
                continue
            if covered >= self.expected:
                if begin is not None:
                    out.append((begin, t))
                    begin = None
            elif begin is None:
                begin = t
        if begin is not None:
            out.append((begin, end))
        return out


def test_second_worker_joins_and_leaves_under_load(tmp_path: Path, worker_factory: Any) -> None:
    broker = start_broker(tmp_path, 4)
    sampler: Sampler | None = None
    try:
        text = wide_catalog(SERVICES)
        catalog = tmp_path / "services.yaml"
        catalog.write_text(text)
        expected = {f"svc-{i}" for i in range(SERVICES)}
        messages = scenario(COMPONENTS, 9_000, seed=77, now=time.time(), span=4 * 3600.0,
                            jitter=0.0)
        half = len(messages) // 2
        a = worker_factory(broker, catalog, name="a")
        a.wait_ready(timeout=40)
        sampler = Sampler([a], expected).start()
        wait_for(lambda: service_names(union_scrape([a])[0]) >= expected, 20, "worker a to export all")

        # Join under load.
        t0 = time.monotonic()
        pub = RatePublisher(broker, messages[:half], rate=300.0).start()
        time.sleep(4.0)
        join_start = time.monotonic()
        b = worker_factory(broker, catalog, name="b")
        sampler.workers = [a, b]
        b.wait_ready(timeout=60)
        pub.join()
        engine_half, _ = reference_engine(text, messages[:half])
        mismatches: list[str] = []
        try:
            wait_for(lambda: counted(union_scrape([a, b])[0]) >= half, 30, "both workers to count")
            wait_equal([a, b], engine_half, timeout=15)
        except AssertionError as exc:
            mismatches.append(f"after the join: {str(exc)[:1500]}")
        join_end = time.monotonic()
        assert counted(union_scrape([a, b])[0]) <= half, "a message counted twice"
        owned = {w.name: len(service_names(union_scrape([w])[0])) for w in (a, b)}
        assert all(owned.values()), f"after the join both workers own services: {owned}"

        # Leave under load.
        pub = RatePublisher(broker, messages[half:], rate=300.0).start()
        time.sleep(4.0)
        leave_start = time.monotonic()
        assert b.stop(signal.SIGTERM) == 0, b.log_tail()
        pub.join()
        engine_all, _ = reference_engine(text, messages)
        try:
            wait_for(lambda: counted(union_scrape([a])[0]) >= len(messages), 30, "a to count all")
            wait_equal([a], engine_all, timeout=15)
        except AssertionError as exc:
            final = counted(union_scrape([a])[0])
            mismatches.append(f"after the leave ({final:.0f} of {len(messages)} counted): "
                              f"{str(exc)[:1500]}")
        leave_end = time.monotonic()
        assert counted(union_scrape([a])[0]) <= len(messages), "a message counted twice"
        sampler.stop()

        join_gaps = sampler.gaps(join_start, join_end)
        leave_gaps = sampler.gaps(leave_start, leave_end)
        outside = sampler.gaps(t0, join_start) + sampler.gaps(join_end, leave_start)
        longest_join = max((e - s for s, e in join_gaps), default=0.0)
        longest_leave = max((e - s for s, e in leave_gaps), default=0.0)
        print(f"\nscrapes: {len(sampler.samples)}; join: services missing {len(join_gaps)}x, "
              f"longest {longest_join:.2f} s; leave: missing {len(leave_gaps)}x, longest "
              f"{longest_leave:.2f} s; services owned after the join {owned}")
        assert not sampler.dups, f"series exported by both workers: {sampler.dups[:5]}"
        assert not outside, f"services missing outside a rebalance: {outside}"
        assert longest_join <= MAX_GAP, f"services missing {longest_join:.1f} s on join"
        assert longest_leave <= MAX_GAP, f"services missing {longest_leave:.1f} s on leave"
        assert a.alive()
        # Counters are derived from the corrected history (CONTRACT §1: any arrival
        # order gives the same numbers), so a segment that arrives after a later one of
        # another component can step a counter back once (DESIGN.md, "Semantic choices";
        # Prometheus reads it as a reset). Reported, not failed: the numbers are exact
        # at both quiet points above.
        print(f"counter steps back seen in the union: {len(sampler.decreases)} "
              f"{sampler.decreases[:3]}")
        assert not mismatches, "\n".join(mismatches)
    finally:
        if sampler is not None:
            sampler.stop()
        broker.stop()
