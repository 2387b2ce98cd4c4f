"""`slawatch demo` end to end: broker + worker + simulator, metrics appear, Ctrl-C cleans up."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agents.clients.broker import free_port, port_is_free
from streams.catalog import load_catalog

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "config" / "services.yaml"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and _alive(int(entry)):
            found.append(int(entry))
    return found


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def test_demo_serves_metrics_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    services = sorted(load_catalog(CATALOG).services)
    port = free_port()
    run_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli.main", "demo", "--duration", "300",
         "--web-port", str(port), "--catalog", str(CATALOG), "--run-dir", str(run_dir),
         "--progress-every", "5", "--heartbeat-rate", "20", "--backfill", "2h"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 120
        missing = set(services)
        while time.monotonic() < deadline and proc.poll() is None:
            text = _metrics(port)
            prefix = r"^slawatch_service_availability_ratio\{[^}]*service="
            missing = {s for s in services if not re.search(prefix + f'"{re.escape(s)}"', text, re.M)}
            if not missing:
                break
            time.sleep(1)
        assert not missing, f"no availability for {sorted(missing)} after 120 s:\n" + "\n".join(lines)
        # /metrics may answer a moment before the demo's own poll of /readyz notices.
        while time.monotonic() < deadline and not any("worker ready" in line for line in lines):
            time.sleep(0.2)
        out = "\n".join(lines)
        assert proc.poll() is None, f"demo exited early:\n{out}"
        assert f"http://127.0.0.1:{port}/metrics" in out
        assert "/api/services" in out

        broker_pid = int(re.search(r"tansu pid (\d+)", out).group(1))  # type: ignore[union-attr]
        worker_pid = int(re.search(r"worker  pid (\d+)", out).group(1))  # type: ignore[union-attr]
        assert _alive(broker_pid) and _alive(worker_pid)

        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
        t.join(timeout=5)
        out = "\n".join(lines)
        assert code == 0, out
        assert "stopping (SIGINT)" in out
        assert not _alive(broker_pid) and not _alive(worker_pid)
        assert _processes_mentioning(str(run_dir)) == []
        assert port_is_free(port)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in _processes_mentioning(str(run_dir)):  # only this test's children
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_demo_reports_a_bad_catalog_without_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 2, period: 30d},"
                   " restore_time: 1h, requires: [b]}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "demo", "--catalog", str(bad), "--duration", "5"],
        cwd=ROOT, capture_output=True, timeout=60,
    )
    assert proc.returncode == 2
    assert str(bad).encode() in proc.stderr
    assert b"tansu pid" not in proc.stdout


def test_demo_stops_the_rest_when_the_worker_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli.main", "demo", "--duration", "300",
         "--web-port", str(free_port()), "--catalog", str(CATALOG), "--run-dir", str(run_dir),
         "--heartbeat-rate", "10", "--backfill", "1h"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("worker  pid" in line for line in lines):
            time.sleep(0.2)
        out = "\n".join(lines)
        worker_pid = int(re.search(r"worker  pid (\d+)", out).group(1))  # type: ignore[union-attr]
        broker_pid = int(re.search(r"tansu pid (\d+)", out).group(1))  # type: ignore[union-attr]
        os.kill(worker_pid, signal.SIGKILL)
        code = proc.wait(timeout=60)
        t.join(timeout=5)
        out = "\n".join(lines)
        assert code == 1, out
        assert "the worker exited with code -9; stopping the rest" in out
        assert not _alive(broker_pid)
        assert _processes_mentioning(str(run_dir)) == []
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in _processes_mentioning(str(run_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
