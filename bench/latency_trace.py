"""Where a late event's time goes: the latency measurement of bench/throughput.py (c)
on a worker that traces itself (bench/inworker.py ``trace``).

    .venv/bin/python bench/latency_trace.py [--ab TREE] [--rounds 3] [--seconds 20]
                                            [--under-load base]

Each down event is followed from its publish to the first ``/metrics`` scrape that
counts it (as (c) measures), through the fetch that brought it to stage 1, the stage-1
batch that classified it, the fetch and stage-2 batch that applied its segment, to the
scrape. Its latency is split into those steps:

  hop1    publish -> the end of the fetch that returned it (producer, broker, fetch wait)
  queue1  that fetch's end -> its stage-1 batch began (the drain loop: checkpoints, the
          other stage's batch, anything else on the event loop)
  stage1  the stage-1 batch
  hop2    stage 1's end -> the end of the fetch that returned the segment; for a
          segment stage 2 applied from its send (``BatchConsumer.apply_own``): stage
          1's end -> that stage-2 batch began (the broker's acknowledgement)
  queue2  that fetch's end -> its stage-2 batch began (0 for a segment from its send)
  stage2  the stage-2 batch
  visible stage 2's end -> the scrape that counted it began (scrapes every 10 ms)

and, for the slowest 1%, what else happened in the worker meanwhile: garbage
collections, event-loop stalls over 5 ms (main loop and the consumer thread's),
checkpoints, ``/metrics`` responses, scrape prepare/refresh steps. The client's own
requests are traced too: each fetch request to the broker (per partition its fetch
offset, the high watermark the broker answered and the bytes it returned) and each
produce request; ``--keep`` keeps them for a look at single events. ``--ab TREE``
alternates with another checkout's worker under the same trace (its own code, this
tracer). ``--under-load FACTOR=VALUE`` runs that sweep point on another worker
throughout, as ``--latency-under-load`` does.
"""

from __future__ import annotations

import argparse
import bisect
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
import throughput as tp  # noqa: E402

from agents.clients.broker import EmbeddedBroker  # noqa: E402
from agents.worker.partitioning import Partitioner  # noqa: E402

PHASES = ("hop1", "queue1", "stage1", "hop2", "queue2", "stage2", "visible")


def traced_latency_run(broker: EmbeddedBroker, worker: tp.Worker, topic: str, rate: int,
                       seconds: float, n_services: int
                       ) -> list[tuple[float, float, float, int]]:
    """``throughput.latency_run`` with wall-clock times (those of the worker's trace):
    per down event seen (published, seen, its ``ts``, its component index)."""
    pubs, seen_at = tp.watch_run(broker, worker, topic, rate, seconds, n_services,
                                 clock=time.time)
    return [(p, s, ts, c) for (p, ts, c), s in zip(pubs, seen_at, strict=True)
            if s is not None]


def attribute(events: list[tuple[float, float, float, int]], trace: dict[str, Any],
              partitions: int) -> list[dict[str, Any]]:
    """Each event's latency split into PHASES (None where the trace has no match)."""
    batches = sorted(trace["batch"], key=lambda b: b[0])
    s1_of: dict[float, tuple[float, float]] = {}
    s2: dict[int, list[tuple[float, float, list[int], bool]]] = {}
    for t, dur, parts, ts, own in batches:
        for v in ts:
            s1_of[v] = (t, dur)
        for key, stamps in parts.items():
            topic, _, p = key.rpartition("|")
            if topic.endswith("segments"):
                s2.setdefault(int(p), []).append((t, dur, stamps, own))
    fetch_ends = sorted(t + d for t, d, n in trace["fetch"] if n)
    part = Partitioner(partitions)
    out = []
    for pub, seen, ts, c in events:
        row: dict[str, Any] = {"pub": pub, "seen": seen, "latency": seen - pub}
        s1 = s1_of.get(ts)
        if s1 is None:
            out.append(row)
            continue
        t1, d1 = s1
        f1 = fetch_ends[max(0, bisect.bisect_right(fetch_ends, t1 + 1e-6) - 1)]
        row.update(hop1=f1 - pub, queue1=t1 - f1, stage1=d1)
        lo, hi = int(t1 * 1000) - 1, int((t1 + d1) * 1000) + 1
        match = next((b for b in s2.get(part(f"lat{c}"), [])
                      if b[0] >= t1 + d1 - 1e-6 and any(lo <= s <= hi for s in b[2])), None)
        if match is not None:
            t2, d2, _, from_send = match
            f2 = t2 if from_send else fetch_ends[
                max(0, bisect.bisect_right(fetch_ends, t2 + 1e-6) - 1)]
            row.update(hop2=f2 - (t1 + d1), queue2=t2 - f2, stage2=d2, visible=seen - (t2 + d2))
        out.append(row)
    return out


def overlapping(trace: dict[str, Any], lo: float, hi: float) -> dict[str, float]:
    """Seconds of each kind of worker activity inside [lo, hi]."""
    spent: dict[str, float] = {}

    def add(kind: str, t: float, d: float) -> None:
        o = min(hi, t + d) - max(lo, t)
        if o > 0:
            spent[kind] = spent.get(kind, 0.0) + o

    for t, d, gen, _, main in trace["gc"]:
        add(f"gc{gen}{'' if main else '-thread'}", t, d)
    for t, d in trace["lag"]:
        add("loop stall", t, d)
    for t, d in trace["thread_lag"]:
        add("thread stall", t, d)
    for t, d, i in trace["ckpt"]:
        add(f"checkpoint{i}", t, d)
    for t, d in trace["scrape"]:
        add("scrape", t, d)
    for t, d, kind, _ in trace["ahead"]:
        add(kind, t, d)
    for t, d, kind in trace.get("part", []):
        add(kind, t, d)
    return spent


def summary(trace: dict[str, Any], lo: float, hi: float) -> str:
    """What the worker did in [lo, hi] (the measured run)."""
    def inside(rows: list[Any]) -> list[Any]:
        return [r for r in rows if lo <= r[0] <= hi]

    lines = []
    gcs = inside(trace["gc"])
    for gen in (0, 1, 2):
        g = [r[1] for r in gcs if r[2] == gen]
        if g:
            lines.append(f"gc gen{gen}: {len(g)}, {sum(g) * 1000:.0f} ms, max "
                         f"{max(g) * 1000:.1f} ms")
    for key in ("lag", "thread_lag"):
        stalls = [r[1] for r in inside(trace[key])]
        if stalls:
            lines.append(f"{key} > 5 ms: {len(stalls)}, {sum(stalls) * 1000:.0f} ms, "
                         f"> 20 ms {sum(1 for s in stalls if s > 0.02)}, max "
                         f"{max(stalls) * 1000:.0f} ms")
    for key, label in (("ckpt", "checkpoints"), ("scrape", "scrapes")):
        d = sorted(r[1] for r in inside(trace[key]))
        if d:
            lines.append(f"{label}: {len(d)}, p50 {d[len(d) // 2] * 1000:.1f} ms, p99 "
                         f"{d[int(0.99 * len(d))] * 1000:.1f} ms, max {d[-1] * 1000:.1f} ms")
    parts: dict[str, list[float]] = {}
    for r in inside(trace.get("part", [])):
        parts.setdefault(r[2], []).append(r[1])
    for kind, d in sorted(parts.items()):
        d.sort()
        lines.append(f"{kind}: {len(d)}, p50 {d[len(d) // 2] * 1000:.1f} ms, max "
                     f"{d[-1] * 1000:.1f} ms")
    by_topic: dict[str, list[float]] = {}
    for _, d, topic, size in inside(trace.get("send", [])):
        v = by_topic.setdefault(topic.rsplit("-", 2)[-2] if "changelog" in topic
                                else topic.rsplit("-", 1)[-1], [0, 0, 0.0, 0.0, 0])
        v[0] += 1
        v[1] += size
        v[2] += d
        v[3] = max(v[3], d)
        v[4] += d > 0.001
    for topic, v in sorted(by_topic.items()):
        lines.append(f"sends to {topic}: {v[0]}, {v[1] / 1024:.0f} KiB, awaited {v[2] * 1000:.0f}"
                     f" ms ({v[4]} over 1 ms, max {v[3] * 1000:.0f} ms)")
    ahead = inside(trace["ahead"])
    if ahead:
        lines.append(f"prepare/refresh steps: {len(ahead)}, {sum(r[1] for r in ahead) * 1000:.0f}"
                     f" ms, max {max(r[1] for r in ahead) * 1000:.1f} ms")
    bs = inside(trace["batch"])
    if bs:
        d = sorted(r[1] for r in bs)
        lines.append(f"batches: {len(bs)}, p50 {d[len(d) // 2] * 1000:.1f} ms, p99 "
                     f"{d[int(0.99 * len(d))] * 1000:.1f} ms, max {d[-1] * 1000:.1f} ms; "
                     f"{sum(1 for r in bs if r[4])} of them segments from "
                     "their sends")
    bf = inside(trace.get("bfetch", []))
    if bf:
        d = sorted(r[1] for r in bf)
        # partitions the broker had records for (its high watermark past the fetch
        # offset) that the answer left empty: tansu stops reading partitions once a
        # fetch has taken its max wait, and they wait for the next request
        left = sum(1 for r in bf for off, high, size in r[2].values()
                   if off is not None and high is not None and high > off and not size)
        late = sum(1 for r in bf if r[1] >= 0.1)
        lines.append(f"broker fetches: {len(bf)}, p50 {d[len(d) // 2] * 1000:.0f} ms, p99 "
                     f"{d[int(0.99 * len(d))] * 1000:.0f} ms, {late} of >= 100 ms; partitions "
                     f"with records left empty: {left}")
    fs = [r for r in inside(trace["fetch"])]
    if fs:
        lines.append(f"fetches: {len(fs)} ({sum(1 for r in fs if not r[2])} empty), wait p50 "
                     f"{sorted(r[1] for r in fs)[len(fs) // 2] * 1000:.0f} ms")
    return "\n".join("      " + x for x in lines)


def report(rows: list[dict[str, Any]], trace: dict[str, Any], label: str) -> dict[str, float]:
    lat = sorted(r["latency"] for r in rows)
    p50, p99 = lat[len(lat) // 2], lat[int(0.99 * len(lat))]
    full = [r for r in rows if "visible" in r]
    slow = sorted(full, key=lambda r: r["latency"])[-max(1, len(full) // 100):]
    med = sorted(full, key=lambda r: r["latency"])[len(full) // 4: 3 * len(full) // 4]
    print(f"  {label}: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max "
          f"{lat[-1] * 1000:.0f} ms; {len(full)}/{len(rows)} events traced through both "
          f"stages; load average {os.getloadavg()[0]:.1f}")

    def mean_ms(group: list[dict[str, Any]], k: str) -> str:
        return f"{statistics.fmean(r[k] for r in group) * 1000:6.1f}" if group else "   -  "

    print("      phase (mean ms)   " + "  ".join(f"{p:>7}" for p in PHASES))
    print("      middle half       " + "  ".join(f"{mean_ms(med, p):>7}" for p in PHASES))
    print("      slowest 1%        " + "  ".join(f"{mean_ms(slow, p):>7}" for p in PHASES))
    spent: dict[str, float] = {}
    for r in slow:
        for k, v in overlapping(trace, r["pub"], r["seen"]).items():
            spent[k] = spent.get(k, 0.0) + v / len(slow)
    mid: dict[str, float] = {}
    for r in med:
        for k, v in overlapping(trace, r["pub"], r["seen"]).items():
            mid[k] = mid.get(k, 0.0) + v / len(med)
    kinds = sorted(set(spent) | set(mid), key=lambda k: -spent.get(k, 0.0))
    if kinds:
        print("      during the event (mean ms): " + ", ".join(
            f"{k} {spent.get(k, 0.0) * 1000:.1f} (middle {mid.get(k, 0.0) * 1000:.1f})"
            for k in kinds))
    # The stalls of the slowest: when they were (clustered in time, or spread)?
    if slow:
        pubs = sorted(r["pub"] - rows[0]["pub"] for r in slow)
        print(f"      slowest 1% published at (s into the run): "
              f"{', '.join(f'{p:.1f}' for p in pubs[:: max(1, len(pubs) // 12)])}")
    print(summary(trace, rows[0]["pub"], rows[-1]["seen"]))
    return {"p50": p50, "p99": p99}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ab", type=Path, help="another checkout, alternated with this one")
    ap.add_argument("--tree", type=Path, help="measure this checkout as the new side "
                    "instead of this one (to compare two others under the same tracer)")
    ap.add_argument("--under-load", metavar="FACTOR=VALUE",
                    help="run this sweep point on another worker meanwhile")
    ap.add_argument("--ab-faust", metavar="JSON",
                    help="instead of --ab: this checkout again, with these Faust settings "
                         "(SLAWATCH_FAUST_SETTINGS), as the other side")
    ap.add_argument("--ab-fetch-wait", metavar="MS", type=int,
                    help="instead of --ab: this checkout again, its fetches waiting at most "
                         "MS at the broker, as the other side")
    ap.add_argument("--keep", type=Path, help="write each run's trace and events here")
    opts = ap.parse_args()
    lat_n = 50
    work = Path(tempfile.mkdtemp(prefix="slawatch-lattrace-"))
    trees: list[tuple[str, Path | None]] = [("new", opts.tree.resolve() if opts.tree else None)]
    if opts.ab:
        trees.append(("old", opts.ab.resolve()))
    elif opts.ab_faust or opts.ab_fetch_wait:
        trees.append(("other", None))
    print(f"latency trace at {opts.rate:,}/s for {opts.seconds:.0f} s; work dir {work}",
          flush=True)
    results: dict[str, list[dict[str, float]]] = {k: [] for k, _ in trees}
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        lat_catalog = work / "latency.yaml"
        lat_catalog.write_text(tp.make_catalog(0, 0, 1, lat_n))
        load: Any = None
        if opts.under_load:
            shapes = tp.sweep_shapes([opts.under_load])
            if len(shapes) != 1:
                raise SystemExit(f"--under-load: {len(shapes)} shapes match, want one")
            index = tp.sweep_shapes().index(shapes[0])
            load = tp.stage_point(broker, work, "load", shapes[0], index, 8)
        for r in range(opts.rounds):
            order = trees if r % 2 == 0 else trees[::-1]
            for kind, tree in order:
                topic = f"lat-{kind}-{r}"
                broker.create_topics({topic: opts.partitions})
                out = work / f"trace-{kind}-{r}.json"
                env = {"BENCH_OUT": str(out)}
                if tree is not None:
                    env["BENCH_CODE_TREE"] = str(tree)
                if kind == "other" and opts.ab_faust:
                    env["SLAWATCH_FAUST_SETTINGS"] = opts.ab_faust
                if kind == "other" and opts.ab_fetch_wait:
                    env["BENCH_FETCH_MAX_WAIT_MS"] = str(opts.ab_fetch_wait)
                w = tp.Worker(broker, lat_catalog, work, opts.partitions, f"lt-{kind}-{r}",
                              events_topic=topic, tree=tree, inworker="trace",
                              inworker_env=env)
                stop = threading.Event()
                th = None
                try:
                    w.wait_ready()
                    tp.latency_run(broker, w, topic, opts.rate, 3.0, lat_n)  # warm-up
                    if load is not None:
                        th = threading.Thread(target=run_load, args=(broker, work, load, r,
                                                                     kind, stop), daemon=True)
                        th.start()
                        time.sleep(8.0)
                    events = traced_latency_run(broker, w, topic, opts.rate, opts.seconds, lat_n)
                    time.sleep(2.5)  # the trace is written every second
                finally:
                    stop.set()
                    if th is not None:
                        th.join(600)
                    w.stop()
                trace = orjson.loads(out.read_bytes())
                if opts.keep:
                    opts.keep.mkdir(parents=True, exist_ok=True)
                    (opts.keep / f"{kind}-{r}.json").write_bytes(
                        orjson.dumps({"trace": trace, "events": events}))
                rows = attribute(events, trace, opts.partitions)
                results[kind].append(report(rows, trace, f"round {r} {kind}"))
    for kind, res in results.items():
        p99 = [x["p99"] * 1000 for x in res]
        print(f"p99 {kind}: median {statistics.median(p99):.0f} ms ("
              f"{', '.join(f'{x:.0f}' for x in p99)}); p50 median "
              f"{statistics.median(x['p50'] * 1000 for x in res):.0f} ms")
    return 0


def run_load(broker: EmbeddedBroker, work: Path, load: Any, r: int, kind: str,
             stop: threading.Event) -> None:
    """Fresh load workers working off the sweep point's backlog, one after the other,
    until ``stop``."""
    catalog, topic, _, wp, ends, rerouted = load
    k = 0
    while not stop.is_set():
        w = tp.Worker(broker, catalog, work, wp, f"load-{kind}-{r}-{k}", events_topic=topic)
        k += 1
        try:
            w.wait_ready()
            tp.wait_pipeline(w, topic, w.segments_topic, ends, timeout=1800,
                             reroute_ends=rerouted)
        except BaseException as exc:  # reported; the latency run goes on
            print(f"    load failed: {exc!r}"[:300], flush=True)
            return
        finally:
            w.stop()


if __name__ == "__main__":
    sys.exit(main())
