"""Micro-benchmark of the pure engine (streams), not a test.

Applies N raw JSON events (decode included) over a generated catalog of C components
and S services with realistic nesting, twice: in batches as the pipeline's stages get
them (Engine.apply_raw_many) and one message at a time (Engine.apply_raw); then
evaluates every metric (Engine.report). Prints events/s, the report time, peak RSS, and
baselines measured in the same run: orjson.loads alone over the same bytes, and the batch
path on the pure-Python loops (the C loops of streams/_native.c turned off).

    .venv/bin/python bench/engine.py                      # 1,000,000 / 10,000 / 2,000
    .venv/bin/python bench/engine.py --events 100000 --components 2000 --services 400

Targets (issue 2): >= 200,000 events/s on one core, report of 2,000 services < 200 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.process import gcpolicy
from streams import native
from streams.catalog import parse_catalog
from streams.engine import Engine
from streams.events import InvalidEvent, parse_event

NOW = 1_709_251_200.0  # 2024-03-01T00:00:00Z
LATENESS = 600.0


def make_catalog(n_components: int, n_services: int, rng: random.Random) -> dict[str, Any]:
    """Each service requires 3-12 components: some alone, some in any/at_least groups,
    about a fifth also depend on an earlier service. Every component is used."""
    comps = [f"host-{i:05d}.dc{i % 3}" for i in range(n_components)]
    components = {
        c: {"team": f"team-{i % 17}", **({"kpi": rng.choice((0.99, 0.995, 0.999))}
                                        if i % 4 else {})}
        for i, c in enumerate(comps)
    }
    pool = comps[:]
    rng.shuffle(pool)
    cursor = 0

    def take(k: int) -> list[str]:
        nonlocal cursor
        out = []
        for _ in range(k):
            if cursor < len(pool):
                out.append(pool[cursor])
                cursor += 1
            else:
                out.append(rng.choice(comps))
        return list(dict.fromkeys(out))

    names = [f"svc-{i:04d}" for i in range(n_services)]
    # spread the components so that every one of them is used once before reuse
    per_service = max(3, min(12, round(n_components / max(1, n_services))))
    services: dict[str, Any] = {}
    for i, name in enumerate(names):
        size = rng.randint(3, 12) if per_service <= 5 else rng.randint(
            max(3, per_service - 3), min(12, per_service + 3)
        )
        members = take(size)
        requires: list[Any] = []
        while members:
            roll = rng.random()
            if roll < 0.4 or len(members) < 2:
                requires.append(members.pop())
            elif roll < 0.7:
                group, members = members[:2], members[2:]
                requires.append({"any": group})
            else:
                n = min(len(members), rng.randint(3, 4))
                group, members = members[:n], members[n:]
                requires.append({"at_least": n - 1, "of": group})
        if i > 10 and rng.random() < 0.2:
            requires.append({"service": names[rng.randrange(0, i)]})
        services[name] = {
            "kind": rng.choice(("internal", "external")),
            "customers": ["all-staff"],
            "sla": {
                "target": rng.choice((0.99, 0.995, 0.999, 0.9995)),
                "period": rng.choice(("30d", "30d", "7d", "month")),
            },
            "restore_time": rng.choice(("30m", "1h", "4h")),
            "requires": requires,
        }
    return {"components": components, "services": services}


def make_events(
    n_events: int, comps: list[str], span: float, rng: random.Random
) -> list[bytes]:
    """A realistic stream over `span` seconds ending at NOW: incidents (down, then up
    after ~10 min, exponential), maintenance windows (~1 h), and heartbeats (a state
    re-sent unchanged, ~40%). Events arrive in time order, except that ~10% are
    delayed within the allowed lateness, and ~1% are delivered twice."""
    sources = ("nagios", "prometheus", "zabbix")
    items: list[tuple[float, str, str]] = []
    start = NOW - span
    while len(items) < n_events:
        c = rng.choice(comps)
        t = rng.uniform(start, NOW)
        roll = rng.random()
        if roll < 0.4:
            items.append((t, c, "up"))
        elif roll < 0.97:
            items.append((t, c, "down"))
            items.append((t + rng.expovariate(1 / 600.0), c, "up"))
        else:
            items.append((t, c, "maintenance"))
            items.append((t + rng.uniform(1800, 7200), c, "up"))
    arrivals: list[tuple[float, bytes]] = []
    for i, (t, c, s) in enumerate(items[:n_events]):
        if t > NOW:
            t = NOW
        # copied: orjson.dumps' result keeps a ~4 KB buffer, 4 GB for a million events
        raw = bytes(bytearray(orjson.dumps(
            {"component": c, "state": s, "ts": round(t, 3), "source": sources[i % 3],
             "id": f"e{i}"}
        )))
        delay = rng.uniform(0, LATENESS * 0.9) if rng.random() < 0.1 else 0.0
        arrivals.append((t + delay, raw))
        if rng.random() < 0.01:
            arrivals.append((t + delay + 1.0, raw))
    arrivals.sort(key=lambda p: p[0])
    return [raw for _, raw in arrivals[:n_events]]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--components", type=int, default=10_000)
    p.add_argument("--services", type=int, default=2_000)
    p.add_argument("--span-days", type=float, default=7.0, help="event time span (default 7)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reports", type=int, default=3, help="report() repetitions (best of)")
    p.add_argument("--batch", type=int, default=4096,
                   help="messages per apply_raw_many batch (default 4096; 0: skip the batch path)")
    p.add_argument("--skip-single", action="store_true", help="skip the one-message-at-a-time path")
    p.add_argument("--compare-gc", action="store_true",
                   help="also measure the batch path under CPython's own GC thresholds")
    p.add_argument("--gc-threshold", default=",".join(map(str, gcpolicy.DEFAULT)),
                   help="GC thresholds while measuring (default: the worker's, %(default)s)")
    args = p.parse_args(argv)
    thresholds = gcpolicy.parse(args.gc_threshold)
    cpython_default = gcpolicy.apply(thresholds)

    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    data = make_catalog(args.components, args.services, rng)
    catalog = parse_catalog(data, "bench")
    comps = list(data["components"])
    raws = make_events(args.events, comps, args.span_days * 86400.0, rng)
    n = len(raws)
    nbytes = sum(map(len, raws))
    sizes = [len(catalog.components_of(s)) for s in catalog.services]
    print(
        f"setup: {len(comps)} components, {len(catalog.services)} services "
        f"({min(sizes)}-{max(sizes)} components each, transitive, mean "
        f"{sum(sizes) / len(sizes):.1f}), {n} events, {nbytes / n:.0f} B/event, "
        f"generated in {time.perf_counter() - t0:.1f} s; peak RSS {peak_rss_mb():.0f} MB"
    )
    print(f"GC thresholds {','.join(map(str, thresholds))} (a worker's; CPython's own are "
          f"{','.join(map(str, cpython_default))}); {native.describe()}")

    gc.collect()
    loads = orjson.loads
    t0 = time.perf_counter()
    for raw in raws:
        loads(raw)
    base = time.perf_counter() - t0
    print(f"baseline orjson.loads: {n / base:12,.0f} events/s  ({base:.2f} s)")

    t0 = time.perf_counter()
    for raw in raws:
        try:  # noqa: SIM105 -- contextlib.suppress would cost more than what it measures
            parse_event(raw, NOW)
        except InvalidEvent:
            pass
    parse = time.perf_counter() - t0
    print(f"parse_event alone:     {n / parse:12,.0f} events/s  ({parse:.2f} s)")

    rates: dict[str, float] = {}
    errors: Counter[str] = Counter()
    engine = Engine(catalog, allowed_lateness=LATENESS)
    if args.batch > 0:
        # The pipeline's way: a fetched batch through stage 1, then each service's share
        # of its segments in one go (Engine.apply_raw_many -> ServiceTracker.apply_many).
        apply_many = engine.apply_raw_many
        size = args.batch
        batches = [raws[i:i + size] for i in range(0, n, size)]
        # The last batch is held back: applied after the reports, as events keep coming
        # between two scrapes.
        batches, held = batches[:-1], batches[-1]
        timed = n - len(held)
        gc.collect()
        t0 = time.perf_counter()
        for batch in batches:
            try:
                apply_many(batch, NOW)
            except Exception as exc:  # an engine bug: count it, say so, keep measuring
                errors[f"{type(exc).__name__}: {exc}"] += 1
        took = time.perf_counter() - t0
        rates["batch"] = timed / took
        print(
            f"engine.apply_raw_many: {timed / took:12,.0f} events/s  ({took:.2f} s, batches of "
            f"{size}) = {timed / took / (n / base):.2f} x orjson alone"
        )
        def again() -> float:
            """Seconds for the same batches on an engine of its own (errors counted above)."""
            other = Engine(catalog, allowed_lateness=LATENESS)
            gc.collect()
            t0 = time.perf_counter()
            for batch in batches:
                with contextlib.suppress(Exception):
                    other.apply_raw_many(batch, NOW)
            return time.perf_counter() - t0

        # The baseline of the C loops: the pure-Python ones.
        fast = native.native
        if fast is not None:
            native.native = None
            took = again()
            native.native = fast
            print(f"  pure-Python loops:   {timed / took:12,.0f} events/s  ({took:.2f} s; the C loops "
                  f"run {rates['batch'] / (timed / took):.2f} x as fast)")
        else:
            print(f"  (pure-Python loops: {native.describe()})")
        if args.compare_gc:
            # The same under CPython's default thresholds.
            gcpolicy.apply(cpython_default)
            took = again()
            gcpolicy.apply(thresholds)
            print(f"  with GC thresholds {','.join(map(str, cpython_default))}: "
                  f"{timed / took:12,.0f} events/s  ({took:.2f} s)")
    if not args.skip_single:
        single = Engine(catalog, allowed_lateness=LATENESS)
        apply_raw = single.apply_raw
        gc.collect()
        t0 = time.perf_counter()
        for raw in raws:
            try:
                apply_raw(raw, NOW)
            except Exception as exc:  # an engine bug: count it, say so, keep measuring
                errors[f"{type(exc).__name__}: {exc}"] += 1
        took = time.perf_counter() - t0
        rates["single"] = n / took
        print(
            f"engine.apply_raw:      {n / took:12,.0f} events/s  ({took:.2f} s, one message at a time) "
            f"= {n / took / (n / base):.2f} x orjson alone"
        )
        if args.batch <= 0:
            engine = single
    rate = max(rates.values())
    print(f"apply, best path:      {rate:12,.0f} events/s; target >= 200,000/s: "
          f"{'OK' if rate >= 200_000 else 'MISSED'}")

    if errors:
        print(f"ENGINE ERRORS on {sum(errors.values())} events: {dict(errors.most_common(3))}")

    times = []
    report = None
    for _ in range(max(1, args.reports)):
        gc.collect()
        t0 = time.perf_counter()
        report = engine.report(NOW)
        times.append(time.perf_counter() - t0)
    assert report is not None
    best = min(times)
    print(
        f"engine.report(now):    {best * 1000:8.1f} ms best of {len(times)} "
        f"(first {times[0] * 1000:.1f} ms) for {len(report.services)} services and "
        f"{len(report.components)} components; target < 200 ms: "
        f"{'OK' if best < 0.2 else 'MISSED'}"
    )
    if args.batch > 0:
        engine.apply_raw_many(held, NOW)
        t0 = time.perf_counter()
        report = engine.report(NOW)
        print(f"  after {len(held)} more events: {(time.perf_counter() - t0) * 1000:.1f} ms "
              "(a scrape while events flow: only what changed is rebuilt)")
    if rates.keys() == {"batch", "single"}:
        same = single.report(NOW) == report
        print(f"  same report from both paths: {'yes' if same else 'NO -- engine bug'}")
    t0 = time.perf_counter()
    engine.prune(NOW)
    print(f"engine.prune(now):     {(time.perf_counter() - t0) * 1000:8.1f} ms")
    outcomes = Counter({k: v for k, v in report.events_total.items() if v})
    status = Counter(s.sla_status for s in report.services.values())
    down = sum(1 for s in report.services.values() if not s.up)
    print(f"outcomes: {dict(outcomes)}")
    print(
        f"services: {down} down now, status meeting/trending/breached = "
        f"{status[0]}/{status[1]}/{status[2]}"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
