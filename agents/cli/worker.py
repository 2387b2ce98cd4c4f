"""`slawatch worker`: one Faust worker (consume, compute, serve /metrics).

Several workers started with the same settings form one consumer group and share the
partitions. The catalog is validated before anything connects to Kafka: a worker that
cannot know what to compute must not join the group and take partitions from others.
Faust is imported only in ``run`` so the CLI stays fast and `--help` works anywhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from agents import settings as settings_mod

if TYPE_CHECKING:
    from streams.catalog import Catalog

EXIT_CONFIG = 2
#: Exit status when a stop did not finish within ``STOP_DEADLINE`` seconds.
EXIT_STOP_TIMEOUT = 3
#: Seconds a SIGTERM/SIGINT may take before the process exits anyway. Faust's stop waits
#: for the broker (commit, LeaveGroup, producer flush) and retries forever while it is
#: unreachable; a supervisor's stop must still work then. Nothing is lost by exiting:
#: what was not committed is delivered again.
STOP_DEADLINE = 30.0
#: Catalogs of at most this many services have every model built at start (2-3 KiB and
#: ~20-40 us each).
MODELS_AHEAD_MAX = 10_000


def build_models_ahead(catalog: Catalog) -> bool:
    """Build every service's model now when the catalog has at most ``MODELS_AHEAD_MAX``
    services (whether it did). Each model is ~20 GC objects: built at start, a storm
    right after it does not build them, and the start-up freeze keeps the collector from
    walking them. Past the limit a worker of several would hold too many of other
    workers' services: those are built at first use."""
    if len(catalog.services) > MODELS_AHEAD_MAX:
        return False
    catalog.build_models()
    return True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_mod.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    settings = settings_mod.from_args(args)
    problems = settings.validate()
    if problems:
        for p in problems:
            print(f"slawatch worker: {p}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in settings.kafka.warnings() + settings.web_warnings():
        print(f"slawatch worker: warning: {warning}", file=sys.stderr)

    from streams.catalog import CatalogError, load_catalog

    try:
        catalog = load_catalog(settings.catalog)
    except CatalogError as exc:
        print(f"slawatch worker: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"slawatch worker: cannot read catalog {settings.catalog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    settings.data_dir.mkdir(parents=True, exist_ok=True)

    from agents.process import gcpolicy, mallocpolicy
    from streams import native

    gcpolicy.apply(settings.gc_threshold)
    malloc_policy = mallocpolicy.apply()

    import faust

    from agents import transport
    from agents.transport.versions import UntestedVersion
    from agents.worker.app import build_app

    try:
        patches = transport.apply(settings.broker_kind)
    except UntestedVersion as exc:
        print(f"slawatch worker: {exc}", file=sys.stderr)
        return 2

    built = build_app(settings, catalog)
    build_models_ahead(catalog)
    gcpolicy.freeze()  # the modules, the app and the catalog: built once, kept for good
    log = logging.getLogger("slawatch.worker")
    app: Any = built.app

    async def _first_ready(sender: object, **kwargs: object) -> None:
        log.info("partitions assigned %.1f s after start: %d services owned here",
                 time.monotonic() - started, len(built.rt.owned_services()))

    async def _hello() -> None:
        log.info("slawatch worker: %s (catalog: %d services, %d components; %s; %s; "
                 "patches: %s)", settings.describe(), len(catalog.services),
                 len(catalog.components), malloc_policy, native.describe(), ", ".join(patches))

    app.on_rebalance_complete.connect(_first_ready)
    app.task(_hello)
    worker = _worker_class(faust.Worker)(
        app,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        quiet=True,
    )

    code: object = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code
    if built.rt.refused is not None:
        print(f"slawatch worker: {built.rt.refused}", file=sys.stderr)
        return EXIT_CONFIG
    return code if isinstance(code, int) else (0 if code is None else 1)


def _worker_class(base: Any) -> Any:
    """``faust.Worker`` with a deadline on stopping, and a second signal exits at once,
    and without the terminal spinner."""
    import os
    import threading

    class Worker(base):  # type: ignore[misc]
        _deadline: threading.Timer | None = None

        def _schedule_shutdown(self, signal: Any) -> None:
            log = logging.getLogger("slawatch.worker")
            if self._deadline is not None:
                log.warning("second %s: exiting now (uncommitted input is redelivered)",
                            getattr(signal, "name", signal))
                logging.shutdown()
                os._exit(EXIT_STOP_TIMEOUT)

            def give_up() -> None:
                log.error("stop did not finish in %.0f s (broker unreachable?): exiting; "
                          "uncommitted input is delivered again", STOP_DEADLINE)
                logging.shutdown()
                os._exit(EXIT_STOP_TIMEOUT)

            self._deadline = threading.Timer(STOP_DEADLINE, give_up)
            self._deadline.daemon = True
            self._deadline.start()
            super()._schedule_shutdown(signal)

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Faust's spinner sets the root logger to DEBUG (its handler spins on every
            # record), so each debug call of aiokafka built and handled a LogRecord: 3%
            # of the worker's time in an alert storm, for a spinner nobody sees.
            self.spinner = None

    return Worker


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.cli.worker``: the same as `slawatch worker`."""
    parser = argparse.ArgumentParser(prog="slawatch worker")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
