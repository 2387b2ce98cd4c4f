"""`slawatch report` as a user runs it: its errors, and its formats of one body."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agents.clients.broker import free_port
from tests.e2e.test_report_html import october_body
from tests.fixtures_kafka import EXAMPLE_CATALOG, ROOT


def report(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    catalog = tmp_path / "services.yaml"
    if not catalog.exists():
        catalog.write_text(EXAMPLE_CATALOG)
    return subprocess.run([sys.executable, "-m", "agents.cli.main", "report", "--catalog",
                           str(catalog), "--timeout", "3", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "says"), [
    (["--period", "2026-13"], "--period"),
    (["--period", "November"], "expected YYYY-MM"),
    (["--period", "2026-11", "--service", "nosuch"], "nosuch"),
])
def test_bad_arguments_are_refused_naming_them(tmp_path: Path, args: list[str], says: str) -> None:
    done = report(tmp_path, *args)
    assert done.returncode == 2 and says in done.stderr, done


def test_a_bad_catalog_is_named(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text("services: {x: {}}\n")
    done = report(tmp_path, "--period", "2026-11")
    assert done.returncode == 2 and "services.yaml" in done.stderr, done


def test_nothing_to_ask_says_where_it_looked(tmp_path: Path) -> None:
    port = free_port()
    done = report(tmp_path, "--period", "2026-11", "--broker", f"kafka://127.0.0.1:{port}")
    assert done.returncode == 1 and f"127.0.0.1:{port}" in done.stderr, done
    assert "Traceback" not in done.stderr
    done = report(tmp_path, "--period", "2026-11", "--worker", f"http://127.0.0.1:{port}")
    assert done.returncode == 1 and "no worker answered" in done.stderr, done


def test_formats_say_the_same() -> None:
    from agents.cli.report import render

    body = october_body()
    rows = list(csv.DictReader(io.StringIO(render(body, "csv"))))
    js = orjson.loads(render(body, "json"))
    text = render(body, "table")
    assert [r["service"] for r in rows] == [s["service"] for s in js["services"]] == ["dns", "email"]
    for row, svc in zip(rows, js["services"], strict=True):
        assert float(row["availability"]) == svc["availability"]
        assert int(row["outages"]) == svc["outages"]
        assert row["met"] == ("true" if svc["met"] else "false")
        assert f"{svc['availability'] * 100:.4f}%" in text
    assert js["period"] == "2026-10"
    assert all(isinstance(s["downtime_by_component"], dict) for s in js["services"])
