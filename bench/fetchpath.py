"""The worker's fetch path, variant against variant, alternated in one run.

    python bench/fetchpath.py [--rounds N] [--shape FACTOR=VALUE ...] VARIANT ...

Stages one sweep point of ``bench/throughput.py`` (the base shape unless ``--shape``
changes a factor) and measures each VARIANT once a round, in a rotated order, then
prints the medians and the load average. Variants (``VARIANTS``): ``raw`` (aiokafka
``getmany`` in this process), ``in-raw`` / ``in-thread`` (bench/inworker.py raw /
rawthread: the same on the worker's event loop / on Faust's consumer thread), ``fetch``
(the worker's own fetch path, a stage 1 that only decodes) and ``fetch-...`` variants of
it with a setting changed, and ``pipeline`` (the whole worker).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from agents.clients.broker import EmbeddedBroker  # noqa: E402
from bench import throughput  # noqa: E402
from bench.throughput import (  # noqa: E402
    POLL_INTERVAL,
    SWEEP_BASE,
    Worker,
    raw_getmany,
    stage_point,
    sweep_shapes,
    wait_pipeline,
)


def _faust(settings: dict[str, Any]) -> dict[str, str]:
    return {"SLAWATCH_FAUST_SETTINGS": orjson.dumps(settings).decode()}


#: name -> (bench/inworker.py mode, or "raw" / "pipeline"; extra environment)
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "raw": ("raw", {}),
    "in-raw": ("inraw", {}),
    "in-thread": ("rawthread", {}),
    "fetch": ("fetch", {}),
    "fetch-sw1ms": ("fetch", {"BENCH_SWITCHINTERVAL": "0.001"}),
    "fetch-sw20ms": ("fetch", {"BENCH_SWITCHINTERVAL": "0.02"}),
    "fetch-poll10k": ("fetch", _faust({"broker_max_poll_records": 10_000})),
    "fetch-4m": ("fetch", _faust({"consumer_max_fetch_size": 4 * 1024 * 1024})),
    "fetch-256k": ("fetch", _faust({"consumer_max_fetch_size": 256 * 1024})),
    "pipeline": ("pipeline", {}),
    # --base TREE's pipeline and fetch path (its own bench/inworker.py)
    "base": ("pipeline", {}),
    "base-fetch": ("fetch", {}),
    "pipeline-sw1ms": ("worker", {"BENCH_SWITCHINTERVAL": "0.001"}),
    "pipeline-sw20ms": ("worker", {"BENCH_SWITCHINTERVAL": "0.02"}),
    "pipeline-poll10k": ("pipeline", _faust({"broker_max_poll_records": 10_000})),
    "pipeline-4m": ("pipeline", _faust({"consumer_max_fetch_size": 4 * 1024 * 1024})),
}


def run(variant: str, broker: EmbeddedBroker, work: Path, name: str, catalog: Path, topic: str,
        msgs: list[Any], wp: int, ends: dict[int, int], rerouted: Any,
        base: Path | None = None) -> float:
    kind, extra = VARIANTS[variant]
    if kind == "raw":
        return asyncio.run(raw_getmany(broker.bootstrap, topic, len(msgs)))
    out = work / f"{name}.out.json"
    env = dict(extra)
    events_topic = topic
    mode: str | None = None
    tree = None
    if variant.startswith("base"):
        if base is None:
            raise SystemExit(f"variant {variant} needs --base TREE")
        tree = base
    if kind == "worker":
        mode = kind
    elif kind != "pipeline":
        mode = "raw" if kind == "inraw" else kind
        env.update(BENCH_TOPIC=topic, BENCH_EVENTS=str(len(msgs)), BENCH_OUT=str(out))
        if mode in ("raw", "rawthread"):
            events_topic = f"{name}-idle"
    # Worker runs ``throughput.ROOT``'s bench/inworker.py: TREE's own for its variants
    throughput.ROOT = tree or ROOT
    try:
        w = Worker(broker, catalog, work, wp, name, events_topic=events_topic, tree=tree,
                   inworker=mode, inworker_env=env)
    finally:
        throughput.ROOT = ROOT
    try:
        w.wait_ready()
        if mode in (None, "worker"):
            st = wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800,
                               reroute_ends=rerouted)["stats"]
            print(f"    {variant}: {st['fetches']} fetches, {st['batches']} batches, "
                  f"{st['records']} records, held {st['held']}, dropped {st['dropped']}, "
                  f"in the fetch {st['wait_seconds']:.2f} s, "
                  f"in handlers {st['handle_seconds']:.2f} s, "
                  f"first to last batch {st['last_at'] - (st.get('begun_at') or st['first_at']):.2f} s",
                  flush=True)
            # (a tree without ``begun_at`` counts from the end of its first batch)
            start = st.get("begun_at") or st["first_at"]
            return float(len(msgs) / max(1e-9, st["last_at"] - start))
        deadline = time.monotonic() + 600
        while not out.exists():
            if not w.alive() or time.monotonic() > deadline:
                raise SystemExit(f"{variant} failed:\n{w.log.read_text()[-3000:]}")
            time.sleep(POLL_INTERVAL)
        return float(orjson.loads(out.read_bytes())["rate"])
    finally:
        w.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shape", action="append", default=[], metavar="FACTOR=VALUE")
    ap.add_argument("--worker-partitions", type=int, default=8)
    ap.add_argument("--base", type=Path, metavar="TREE",
                    help="another checkout (with its .venv) that variants base and base-fetch run")
    opts = ap.parse_args()
    shape = dict(SWEEP_BASE)
    for item in opts.shape:
        factor, _, value = item.partition("=")
        shape[factor] = type(SWEEP_BASE[factor])(float(value))
    index = sweep_shapes().index(shape)  # the sweep's seed for this point
    work = Path(tempfile.mkdtemp(prefix="slawatch-fetchpath-"))
    rates: dict[str, list[float]] = {v: [] for v in opts.variants}
    loads: list[float] = []
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        catalog, topic, msgs, wp, ends, rerouted = stage_point(
            broker, work, f"fp-{index}", shape, index, opts.worker_partitions)
        for k in range(opts.rounds):
            order = opts.variants[k % len(opts.variants):] + opts.variants[:k % len(opts.variants)]
            for v in order:
                rate = run(v, broker, work, f"fp-{index}-{k}-{v}", catalog, topic, msgs, wp,
                           ends, rerouted, opts.base)
                rates[v].append(rate)
                loads.append(os.getloadavg()[0])
                print(f"  round {k} {v:<16} {rate:>10,.0f} ev/s  load {loads[-1]:.1f}", flush=True)
    print(f"\n{shape}; load average {min(loads):.1f}-{max(loads):.1f}")
    raw = statistics.median(rates["raw"]) if "raw" in rates else None
    for v, r in rates.items():
        med = statistics.median(r)
        print(f"{v:<16} median {med:>10,.0f}  ({', '.join(f'{x:,.0f}' for x in r)})"
              + (f"  {med / raw:.2f} of raw" if raw else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
