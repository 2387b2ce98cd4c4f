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
from collections.abc import Iterator
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


class Demo:
    """A running `slawatch demo` on this machine: its process, its output so far (read
    by a thread), its web port and run dir."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, run_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.run_dir = run_dir
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, text: str, deadline: float) -> None:
        while time.monotonic() < deadline and not any(text in line for line in self.lines):
            time.sleep(0.2)

    def pid(self, pattern: str) -> int:
        """The pid the demo printed for ``pattern`` (``tansu pid``, ``worker  pid``)."""
        found = re.search(pattern + r" (\d+)", self.out)
        assert found, f"no '{pattern}' in the demo's output:\n{self.out}"
        return int(found.group(1))

    def stopped(self, code: int) -> str:
        """Wait for the demo to exit with ``code``; its whole output."""
        got = self.proc.wait(timeout=60)
        self.reader.join(timeout=5)
        assert got == code, self.out
        return self.out


@contextlib.contextmanager
def demo(tmp_path: Path, *flags: str) -> Iterator[Demo]:
    """`slawatch demo` on the example catalog and a free port, with ``flags``; after,
    nothing of it is left running (by its session and by the run dir in a command
    line: only this test's processes)."""
    port = free_port()
    run_dir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.cli.main", "demo", "--duration", "300",
         "--web-port", str(port), "--catalog", str(CATALOG), "--run-dir", str(run_dir), *flags],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        yield Demo(proc, port, run_dir)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in _processes_mentioning(str(run_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_demo_serves_metrics_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    services = sorted(load_catalog(CATALOG).services)
    with demo(tmp_path, "--progress-every", "5", "--heartbeat-rate", "20",
              "--backfill", "2h") as d:
        deadline = time.monotonic() + 120
        missing = set(services)
        while time.monotonic() < deadline and d.proc.poll() is None:
            text = _metrics(d.port)
            prefix = r"^slawatch_service_availability_ratio\{[^}]*service="
            missing = {s for s in services if not re.search(prefix + f'"{re.escape(s)}"', text, re.M)}
            if not missing:
                break
            time.sleep(1)
        assert not missing, f"no availability for {sorted(missing)} after 120 s:\n{d.out}"
        # /metrics may answer a moment before the demo's own poll of /readyz notices.
        d.wait_line("worker ready", deadline)
        out = d.out
        assert d.proc.poll() is None, f"demo exited early:\n{out}"
        assert f"http://127.0.0.1:{d.port}/metrics" in out
        assert "/api/services" in out

        broker_pid, worker_pid = d.pid("tansu pid"), d.pid("worker  pid")
        assert _alive(broker_pid) and _alive(worker_pid)

        d.proc.send_signal(signal.SIGINT)
        out = d.stopped(0)
        assert "stopping (SIGINT)" in out
        assert not _alive(broker_pid) and not _alive(worker_pid)
        assert _processes_mentioning(str(d.run_dir)) == []
        assert port_is_free(d.port)


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
    with demo(tmp_path, "--heartbeat-rate", "10", "--backfill", "1h") as d:
        d.wait_line("worker  pid", time.monotonic() + 60)
        worker_pid, broker_pid = d.pid("worker  pid"), d.pid("tansu pid")
        os.kill(worker_pid, signal.SIGKILL)
        out = d.stopped(1)
        assert "the worker exited with code -9; stopping the rest" in out
        assert not _alive(broker_pid)
        assert _processes_mentioning(str(d.run_dir)) == []
