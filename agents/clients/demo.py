"""`slawatch demo`: the whole pipeline on one machine, nothing to install.

Starts, in this order, an embedded tansu broker, one `slawatch worker` process and the
failure simulator (in this process), then says where to look. It owns every process it
starts and stops them by PID, in reverse order, when it is interrupted (Ctrl-C or
SIGTERM), when ``--duration`` is over, or when any of them dies (it says which). The
children run in their own sessions, so a Ctrl-C in the terminal reaches only the demo,
which can then let the worker leave its group before the broker goes away; and they
get a parent-death signal, so even a SIGKILLed demo leaves nothing behind on Linux.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import IO, Any

DEFAULT_WEB_PORT = 6066
DEMO_PARTITIONS = 8
WORKER_STOP_TIMEOUT = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agents.clients.simulator import add_simulation_arguments, default_catalog

    parser.description = (
        "Run an embedded Kafka-compatible broker, a worker and a failure simulator on this "
        "machine, and print where /metrics, the JSON API and the status page are. Ctrl-C "
        "stops everything."
    )
    parser.add_argument("--web-port", type=int, default=None,
                        help=f"worker web port (default {DEFAULT_WEB_PORT}, or a free one if taken)")
    parser.add_argument("--catalog", default=default_catalog(),
                        help="service catalog (env SLAWATCH_CATALOG, default %(default)s)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--run-dir", default=None,
                        help="where logs and worker state go (default: a new temporary directory)")
    parser.add_argument("--progress-every", type=float, default=10.0,
                        help="seconds between progress lines (default %(default)s)")
    add_simulation_arguments(parser)


def _port_free(port: int) -> bool:
    from agents.clients.broker import port_is_free

    return port_is_free(port, "127.0.0.1")


def _choose_web_port(requested: int | None, out: IO[str]) -> int:
    from agents.clients.broker import free_port

    port = requested or DEFAULT_WEB_PORT
    if _port_free(port):
        return port
    new = free_port()
    print(f"port {port} is taken; the worker serves on {new} instead", file=out)
    return new


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(Exception):
            return exc.code, json.loads(exc.read())
        return exc.code, None
    except (OSError, ValueError):
        return 0, None


class _Worker:
    """The worker subprocess, in its own session, logging to a file."""

    def __init__(self, cmd: list[str], log_path: Path, cwd: Path) -> None:
        from agents.clients.broker import set_parent_death_signal

        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = set_parent_death_signal
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True, **kwargs,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = WORKER_STOP_TIMEOUT) -> int | None:
        """SIGTERM (Faust shuts down cleanly, leaving the group), SIGKILL after timeout."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"worker pid {proc.pid} did not stop within {timeout:.0f} s; killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=timeout)
        self._log.close()
        return proc.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


#: The demo's own maintenance window opens this long after the start, for this long, so
#: that "scheduled maintenance" shows on the status page while one watches.
DEMO_WINDOW_AFTER, DEMO_WINDOW_FOR = 120.0, 600.0


def _with_live_window(catalog_path: Path, run_dir: Path) -> tuple[Path, str]:
    """A copy of the catalog in ``run_dir`` with a one-off maintenance window on the
    first component of the weekly patching window (CONTRACT §6) that opens during
    the demo; the original path and "" if the catalog has no weekly window."""
    import yaml

    from streams.calendars import format_instant

    data = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    windows = data.get("maintenance") if isinstance(data, dict) else None
    weekly = [w for w in windows or [] if isinstance(w, dict) and w.get("weekly")
              and w.get("components")]
    if not weekly or not isinstance(windows, list):
        return catalog_path, ""
    comp = weekly[0]["components"][0]
    start = time.time() + DEMO_WINDOW_AFTER
    windows.append({"name": "demo-patching", "components": [comp],
                    "start": format_instant(start), "end": format_instant(start + DEMO_WINDOW_FOR)})
    path = run_dir / "services.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path, (f"{comp} is in a maintenance window (demo-patching) from "
                  f"{DEMO_WINDOW_AFTER:g} s to {DEMO_WINDOW_AFTER + DEMO_WINDOW_FOR:g} s after "
                  f"the start, besides {weekly[0]['name']} ({'; '.join(weekly[0]['weekly'])})")


def run(args: argparse.Namespace) -> int:
    from agents.clients.broker import BrokerError, EmbeddedBroker
    from agents.clients.publish import KafkaSettings, Publisher, PublishError
    from agents.clients.simulator import Progress, Simulator, config_from_args, run_simulation
    from streams.catalog import CatalogError, load_catalog

    out = sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    catalog_path = Path(args.catalog).resolve()
    try:
        catalog = load_catalog(catalog_path)
        config = config_from_args(args)
        sim = Simulator(catalog, config, time.time() - config.backfill)
    except (CatalogError, ValueError) as exc:
        print(f"slawatch demo: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    reason: list[str] = []

    def _on_signal(signum: int, frame: object) -> None:
        if not reason:
            reason.append(signal.Signals(signum).name)
        stop.set()

    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="slawatch-demo-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    catalog_path, patching = _with_live_window(catalog_path, run_dir)
    web_port = _choose_web_port(args.web_port, out)
    base = f"http://127.0.0.1:{web_port}"
    broker: EmbeddedBroker | None = None
    worker: _Worker | None = None
    publisher: Publisher | None = None
    sim_thread: threading.Thread | None = None
    sim_error: list[BaseException] = []
    progress = Progress()
    exit_code = 0
    try:
        say(f"slawatch demo: logs and state in {run_dir}")
        broker = EmbeddedBroker(log_path=run_dir / "tansu.log")
        broker.start()
        say(f"broker  {broker.url}  (tansu pid {broker.pid})")
        broker.create_topics({"component-events": DEMO_PARTITIONS})
        if stop.is_set():
            return 0

        cmd = [
            sys.executable, "-m", "agents.cli.main", "worker",
            "--broker", broker.url,
            "--catalog", str(catalog_path),
            "--web-port", str(web_port),
            "--web-host", "127.0.0.1",
            "--data-dir", str(run_dir / "worker-data"),
            "--store", "memory",
            "--partitions", str(DEMO_PARTITIONS),
            "--broker-kind", "tansu",
        ]
        worker = _Worker(cmd, run_dir / "worker.log", Path.cwd())
        say(f"worker  pid {worker.pid}  (log {worker.log_path})")

        publisher = Publisher(KafkaSettings(broker=broker.url), "component-events", client_id="slawatch-demo")
        if sim.trending_service:
            say(f"simulator: {len(sim.components)} components; {sim.trending_service} will trend below "
                f"its SLA ({sim.flap_component} flaps); {config.backfill / 3600:g} h of history first")
        if patching:
            say(f"catalog: {patching}")
        for name in sorted(catalog.services):
            cal = catalog.calendar(name)
            if cal is not None and cal.service_time is not None:
                inside = "inside it now" if cal.in_service_time(time.time()) else "outside it now"
                say(f"catalog: {name} is agreed {cal.service_time.schedule.describe()} "
                    f"({inside}: outside it, seconds count for nothing)")
        if sim.opening_component and config.opening_incident is not None:
            say(f"simulator: {sim.opening_component} will fail {config.opening_incident:g} s after going "
                "live (a redundant component: watch its service stay up)")

        def simulate() -> None:
            assert publisher is not None
            try:
                run_simulation(sim, publisher.send, stop=stop, progress=progress, flush=publisher.flush)
            except BaseException as exc:  # reported by the main loop
                sim_error.append(exc)

        sim_thread = threading.Thread(target=simulate, name="slawatch-demo-simulator", daemon=True)
        sim_thread.start()

        started = time.monotonic()
        deadline = None if args.duration is None else started + args.duration
        ready = False
        next_progress = started + args.progress_every
        while not stop.wait(0.5):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                reason.append(f"--duration {args.duration:g} s is over")
                break
            if broker.running() is False:
                say("the broker (tansu) died; stopping the rest")
                exit_code = 1
                break
            if worker.proc.poll() is not None:
                say(f"the worker exited with code {worker.proc.returncode}; stopping the rest. "
                    f"Last lines of {worker.log_path}:\n{worker.tail()}")
                exit_code = 1
                break
            if sim_error or not sim_thread.is_alive():
                say(f"the simulator stopped: {sim_error[0] if sim_error else 'unknown reason'}; "
                    "stopping the rest")
                exit_code = 1
                break
            if not ready:
                status, _ = _get_json(f"{base}/readyz", timeout=1.0)
                if status == 200:
                    ready = True
                    say(
                        f"\nworker ready after {now - started:.0f} s. Look here:\n"
                        f"  status page   {base}/\n"
                        f"  metrics       {base}/metrics\n"
                        f"  services API  {base}/api/services\n"
                        f"  outages       {base}/api/services/"
                        f"{sim.trending_service or next(iter(sorted(catalog.services)))}/outages\n"
                        "Ctrl-C stops everything.\n"
                    )
            if now >= next_progress:
                next_progress = now + args.progress_every
                line = (f"[{now - started:5.0f} s] events sent {progress.total:,} "
                        f"(backfill {progress.backfilled:,}, state changes {progress.changes:,}, "
                        f"heartbeats {progress.heartbeats:,}; failed {publisher.failed})")
                if ready:
                    _, body = _get_json(f"{base}/api/services", timeout=2.0)
                    if isinstance(body, dict):
                        services = body.get("services", [])
                        counts = Counter(s.get("sla", {}).get("status", "?") for s in services)
                        line += ", services: " + ", ".join(f"{n} {k.replace('_', ' ')}"
                                                          for k, n in sorted(counts.items()))
                else:
                    line += ", worker starting"
                say(line)
        if reason and exit_code == 0:
            say(f"stopping ({reason[0]})")
    except (BrokerError, PublishError) as exc:
        print(f"slawatch demo: {exc}", file=sys.stderr)
        exit_code = 1
    finally:
        stop.set()
        if sim_thread is not None:
            sim_thread.join(timeout=10)
        if publisher is not None:
            with contextlib.suppress(Exception):
                publisher.close(timeout=5)
        if worker is not None:
            code = worker.stop()
            say(f"worker pid {worker.pid} stopped (exit code {code})")
        if broker is not None:
            broker_pid = broker.pid
            broker.stop()
            if broker_pid is not None:
                say(f"broker pid {broker_pid} stopped")
        for s, h in old_handlers.items():
            signal.signal(s, h)
    say(f"sent {progress.total:,} events in all; logs in {run_dir}")
    return exit_code
