"""The HTML report as a person sees it: rendered by headless Chromium.

A month of generated history goes through the engine and the rollup book; ``slawatch
report``'s renderer writes the HTML file, and Chromium (no network, no script) renders
it: every service has its row, its chart with a bar per day, and its outage list, the
numbers as the JSON says, and the page is a picture of some size.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests import reference as ref
from tests.e2e.test_statuspage import browse
from tests.fixtures_kafka import EXAMPLE_CATALOG
from tests.strategies import build_engine, to_event
from tests.unit.streams.test_periods import checkpoint, make_book

OCT = datetime(2026, 10, 1, tzinfo=UTC).timestamp()


def october_body() -> dict[str, Any]:
    from agents.cli.report import report_body

    engine = build_engine(yaml.safe_load(EXAMPLE_CATALOG))
    book = make_book(engine)
    rnd = random.Random(7)
    events = []
    for comp in ("mail-srv-01", "core-sw-1", "dns-1", "dns-2", "mx-1", "mx-2"):
        t = OCT - 86400
        while t < OCT + 32 * 86400:
            t += rnd.expovariate(1 / (3 * 86400))
            events.append(ref.Ev(comp, rnd.choice([ref.DOWN, ref.MAINTENANCE]), round(t)))
            events.append(ref.Ev(comp, ref.UP, round(t + rnd.expovariate(1 / 3600))))
    events.sort(key=lambda e: e.ts)
    now = OCT + 40 * 86400
    for i in range(0, len(events), 10):
        batch = events[i:i + 10]
        for e in batch:
            engine.apply(to_event(e))
        for name in engine.services:
            book.mark(name, batch[0].ts)
        checkpoint(engine, book, now)
    return report_body(book, engine.catalog, "2026-10", now)


def test_html_report_renders_every_service(tmp_path: Path) -> None:
    from agents.cli.report import render

    body = october_body()
    page = tmp_path / "report.html"
    page.write_text(render(body, "html"))
    text = page.read_text()
    # Self-contained: nothing to fetch, nothing to run.
    assert "<script" not in text and not re.search(r"(src|href)=\"(https?:)?//", text)

    result = browse(page.as_uri(), tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for s in body["services"]:
        name = s["service"]
        row = re.search(rf'<tr data-service="{name}">(.*?)</tr>', dom, re.S)
        assert row, f"no summary row for {name}"
        assert f"{s['availability'] * 100:.4f}%" in row.group(1)
        assert ("met" if s["met"] else "missed") in row.group(1)
        section = re.search(rf'<section id="svc-{name}" data-service="{name}">(.*?)</section>', dom, re.S)
        assert section, f"no section for {name}"
        bars = re.findall(r'<rect class="day" data-date="([0-9-]+)"', section.group(1))
        assert bars == [d["date"] for d in s["days"]] and len(bars) == 31
        assert ("KPI gap" if s["kpi_gap"] else "No KPI gap") in section.group(1)
        for o in s["outage_list"]:
            for comp in o["components"]:
                assert comp in section.group(1)
        assert len(re.findall(r"<tr>", section.group(1))) >= s["outages"]
    assert any(s["outages"] for s in body["services"])

    shot = tmp_path / "report.png"
    result = browse(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1100,2000")
    assert result.returncode == 0 and shot.stat().st_size > 20000
