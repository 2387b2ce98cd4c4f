"""Check docs/SCALING.md's capacity model at a tenth of its target, with two workers.

The model's target is 1M components / 100k services / 50k events/s; a tenth is 100k
components, 10k services (services of 10, fan-out 1: the catalog of
``bench/throughput.py --scale``) and 5,000 events/s, of which ``--change`` change a
state. Two workers of one app (one consumer group) share ``--partitions``. Every
component is reported once first (so every one has a tracker, as in ``--scale``),
then events come at the steady rate for ``--seconds``. Printed next to what the model
predicts for the same figures:

- whether the workers keep up (the lag once publishing stops) and their CPU (the model:
  ``E / rate`` of a core for the shape, ``rate`` measured by the sweep);
- each worker's RSS (the model: ``N / workers * 3.9 kB + 85 MiB`` + the history);
- each worker's /metrics scrape (the model: ``(10 N + 35 S) / workers`` series at
  0.4-0.9 us each warm) and its size (~110 B a series).

    .venv/bin/python bench/capacity.py [--seconds 60 --rate 5000 --change 0.1]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.clients.broker import EmbeddedBroker  # noqa: E402
from bench.throughput import Worker, make_catalog, publish  # noqa: E402

#: The model's per-worker figures (docs/SCALING.md, section 1).
AT_REST_PER_COMPONENT = 3.9e3  # bytes of worker RSS
IDLE_WORKER_MIB = 85.0
PER_CHANGE = 400.0  # bytes of RSS per stored state change at fan-out 2 (F / 2 scales it)
SCRAPE_US = (0.4, 0.9)  # warm, per series
SERIES_PER = (10, 35)  # per component, per service
RATE_10PCT = (170_000, 190_000)  # ev/s of one worker at 10% changes (the sweep)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def positions(workers: list[Worker], topic: str) -> dict[int, int]:
    """The input positions of every partition, whichever worker owns it."""
    out: dict[int, int] = {}
    for w in workers:
        pos = w.status().get("position", {}).get(topic, {})
        for p, v in pos.items():
            out[int(p)] = max(out.get(int(p), 0), int(v))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--components", type=int, default=100_000)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=5_000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--change", type=float, default=0.1)
    ap.add_argument("--partitions", type=int, default=8)
    opts = ap.parse_args()
    nc, ns, rate = opts.components, opts.services, opts.rate
    work = Path(tempfile.mkdtemp(prefix="slawatch-capacity-"))
    catalog = work / "catalog.json"
    catalog.write_text(make_catalog(nc, ns, 1, 0))
    topic = "capacity-events"
    print(f"{nc:,} components, {ns:,} services, 2 workers, {opts.partitions} partitions; "
          f"{rate:,} ev/s for {opts.seconds:.0f} s, {opts.change:.0%} changes; work {work}",
          flush=True)
    rows: list[tuple[str, str, str]] = []
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        broker.create_topics({topic: opts.partitions})
        now = time.time()
        first = [(f"c{i}".encode(), orjson.dumps({"component": f"c{i}", "state": "up",
                                                  "ts": now - 600})) for i in range(nc)]
        publish(broker, topic, opts.partitions, first)
        for k in range(2):
            (work / f"w{k}").mkdir()
        workers = [Worker(broker, catalog, work / f"w{k}", opts.partitions, "capacity",
                          events_topic=topic) for k in range(2)]
        try:
            for w in workers:
                w.wait_ready(600)
            deadline = time.monotonic() + 900
            while sum(positions(workers, topic).values()) < nc:
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not read the first events")
                time.sleep(1.0)
            time.sleep(20.0)  # both prepared their scrapes, idle
            rest = [w.rss()[0] for w in workers]
            cpu0 = [cpu_seconds(w.proc.pid) for w in workers]
            rows.append(("RSS at rest per worker (MiB)", " / ".join(f"{r:.0f}" for r in rest),
                         f"{nc / 2 * AT_REST_PER_COMPONENT / 2**20 + IDLE_WORKER_MIB:.0f}"))
            # The steady rate, in time order, each event a change with probability c.
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks=1)
            rng = random.Random(5)
            state = ["up"] * nc
            n = int(rate * opts.seconds)
            t0 = time.perf_counter()
            ts0 = time.time()
            for i in range(n):
                target = t0 + i / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                c = rng.randrange(nc)
                if rng.random() < opts.change:
                    state[c] = "down" if state[c] == "up" else "up"
                producer.send(topic, key=f"c{c}".encode(),
                              value=orjson.dumps({"component": f"c{c}", "state": state[c],
                                                  "ts": ts0 + i / rate}))
            producer.flush()
            sent_for = time.perf_counter() - t0
            producer.close()
            total = nc + n
            t_end = time.perf_counter()
            while sum(positions(workers, topic).values()) < total:
                if time.perf_counter() - t_end > 600:
                    raise SystemExit("the workers did not catch up")
                time.sleep(0.1)
            lag = time.perf_counter() - t_end
            cpu = [cpu_seconds(w.proc.pid) - c0 for w, c0 in zip(workers, cpu0, strict=True)]
            busy = sent_for + lag
            rows.append(("published (ev/s)", f"{n / sent_for:,.0f}", f"{rate:,}"))
            rows.append(("kept up: lag once publishing stopped (s)", f"{lag:.1f}",
                         "~0 (CPU is not the limit)"))
            rows.append(("CPU per worker while loaded (% of a core)",
                         " / ".join(f"{c / busy:.1%}" for c in cpu),
                         f"{rate / 2 / RATE_10PCT[1]:.1%}-{rate / 2 / RATE_10PCT[0]:.1%} "
                         "(pipeline alone, without Faust's idle work)"))
            rss = [w.rss()[0] for w in workers]
            changes = rate * opts.change * opts.seconds
            grow = changes * PER_CHANGE / 2 / 2**20  # fan-out 1: half the fan-out 2 figure
            rows.append(("RSS after the load per worker (MiB)", " / ".join(f"{r:.0f}" for r in rss),
                         f"{nc / 2 * AT_REST_PER_COMPONENT / 2**20 + IDLE_WORKER_MIB + grow / 2:.0f}"
                         f" (+{grow / 2:.1f} for {changes:,.0f} changes)"))
            series = (SERIES_PER[0] * nc + SERIES_PER[1] * ns) / 2
            scrapes: list[list[float]] = []
            sizes: list[int] = []
            for w in workers:
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    body = w.get("/metrics", timeout=120)
                    times.append(time.perf_counter() - t)
                scrapes.append(times)
                sizes.append(len(body))
            rows.append(("scrape per worker, best of 3 (ms)",
                         " / ".join(f"{min(t) * 1000:.0f}" for t in scrapes),
                         f"{series * SCRAPE_US[0] / 1e3:.0f}-{series * SCRAPE_US[1] / 1e3:.0f} "
                         f"({series:,.0f} series each)"))
            rows.append(("scrape text per worker (MB)", " / ".join(f"{s / 1e6:.1f}" for s in sizes),
                         f"{series * 110 / 1e6:.1f}"))
        finally:
            for w in workers:
                w.stop()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure':<{width}}  {'measured':<24} model")
    for name, got, model in rows:
        print(f"{name:<{width}}  {got:<24} {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
