"""Scrapes of a real worker during and after a backlog that changes every tracker after
the worker prepared its scrapes, over HTTP as Prometheus asks (``Accept-Encoding:
gzip``) and as a plain client does, compared with the brute-force reference.

Once ready the worker prepares its first scrape; when its pipeline is idle again after
a backlog it refreshes what the backlog changed (``SlawatchCollector.refresh``). Neither
may ever show a stale number: every scrape during the backlog is a whole, well-formed
exposition of events counted so far, and every scrape after it, before and after the
refresh, is exactly the reference's numbers.
"""

from __future__ import annotations

import gzip
import random
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agents.clients.broker import EmbeddedBroker
from tests.fixtures_kafka import (
    Message,
    compare,
    counted,
    event_bytes,
    parse_metrics,
    publish_messages,
    reference_engine,
    reference_samples,
    scenario,
    wait_matches,
    wide_catalog,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def scrape(worker: Any, *, as_prometheus: bool) -> tuple[dict[Any, float], float, float]:
    """Samples of one scrape, and the wall clock before and after it."""
    headers = {"Accept-Encoding": "gzip"} if as_prometheus else {}
    req = urllib.request.Request(worker.url + "/metrics", headers=headers)
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
        encoding = resp.headers.get("Content-Encoding")
    t1 = time.time()
    assert encoding == ("gzip" if as_prometheus else None)
    text = gzip.decompress(body) if as_prometheus else body
    return parse_metrics(text.decode()), t0, t1


def blips(components: list[str], rng: random.Random, now: float) -> list[Message]:
    """A down/up blip of every component, at times spread over the last few minutes
    and hours (so every window's values of some move, and some stay constant)."""
    out: list[Message] = []
    for c in components:
        at = now - rng.choice([20.0, 90.0, 400.0, 2000.0])
        out.append((c.encode(), event_bytes(c, "down", at), None))
        out.append((c.encode(), event_bytes(c, "up", at + rng.choice([1.0, 5.0])), None))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_scrapes_during_and_after_a_backlog_equal_the_reference(
        kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    text = wide_catalog(rng.randrange(8, 30))
    catalog = tmp_path / "services.yaml"
    catalog.write_text(text)
    import yaml

    components = list(yaml.safe_load(text)["components"])
    first = scenario(components, rng.randrange(300, 800), seed=seed, now=time.time())
    publish_messages(kafka_broker, first)
    # At debug level the worker says when it refreshed its scrape state.
    worker = worker_factory(kafka_broker, catalog, extra=["--log-level", "debug"])
    engine, _ = reference_engine(text, first)
    wait_matches([worker], engine, timeout=60)
    time.sleep(2.5)  # the worker has prepared its scrapes, and is idle

    backlog = blips(components, rng, time.time())
    rng.shuffle(backlog)  # per component in order: shuffle whole blips, not events
    backlog.sort(key=lambda m: m[0] or b"")
    messages = first + backlog
    engine, _ = reference_engine(text, messages)
    publish_messages(kafka_broker, backlog)
    # During the backlog: whole expositions, the events counted never going back.
    seen = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        samples, _, _ = scrape(worker, as_prometheus=rng.random() < 0.5)
        assert counted(samples) >= seen
        seen = counted(samples)
        if seen >= len(messages):
            break
    assert seen == len(messages)
    # Once both stages are through: exact (before the refresh), and then after the
    # refresh (the worker is idle for its poll interval, then looks again at what
    # changed) and later.
    wait_matches([worker], engine, timeout=60)
    for pause in (0.0, 0.3, 2.5, 1.0):
        time.sleep(pause)
        samples, t0, t1 = scrape(worker, as_prometheus=pause != 0.3)
        problems = compare(samples, reference_samples(engine, t0), reference_samples(engine, t1))
        assert not problems, (pause, problems[:20])
    assert worker.alive()
    assert "scrape refresh: done" in worker.log_path.read_text(errors="replace")
