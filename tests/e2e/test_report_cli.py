"""`slawatch report` as a user runs it: its errors, and its formats of one body."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _serve(body: dict[str, Any]) -> tuple[str, Any]:
    """A stand-in worker answering GET /api/reports/{period} with ``body``."""
    import http.server
    import threading

    raw = orjson.dumps(body)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/reports/2026-10" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def test_workers_are_gathered_and_the_missing_named(tmp_path: Path) -> None:
    """Two workers each own one service: asked both, the report is whole (each service
    once); asked one, the other's service is named and the exit status is 3."""
    body = october_body()
    dns, email = body["services"]
    w1, s1 = _serve({**body, "services": [dns], "missing": ["email"], "complete": False})
    w2, s2 = _serve({**body, "services": [email, dns], "missing": [], "complete": True})
    w3, s3 = _serve({**body, "services": [email], "missing": ["dns"], "complete": False})
    try:
        done = report(tmp_path, "--period", "2026-10", "--format", "json", "--worker", w1,
                      "--worker", w2)
        assert done.returncode == 0, done.stderr
        got = orjson.loads(done.stdout)
        assert [s["service"] for s in got["services"]] == ["dns", "email"]
        done = report(tmp_path, "--period", "2026-10", "--worker", w3)
        assert done.returncode == 3 and "dns" in done.stderr and "email" in done.stdout, done
        done = report(tmp_path, "--period", "2026-10", "--worker", w3, "--customer", "partners")
        assert done.returncode == 0, done  # the missing service is not this customer's
    finally:
        for s in (s1, s2, s3):
            s.shutdown()
