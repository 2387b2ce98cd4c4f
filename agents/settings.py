"""Worker settings: flags, environment, defaults (CONTRACT §5), and the Faust tuning.

Everything a worker needs is resolved here into one frozen dataclass before Faust is
imported, so `slawatch worker --help` is instant, a bad flag fails before any network
I/O, and the tests can build settings without a broker. Secrets never appear in
``repr`` or in ``describe()``: both are meant for logs.

Faust's defaults are tuned for big clusters where a 30-60 s pause on every start or
rebalance is acceptable; for a monitoring pipeline (and on the embedded broker) a
worker must be consuming within seconds. ``FAUST_TUNING`` records what was measured.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.connection import KafkaConnection, add_security_arguments, env_value
from agents.process import gcpolicy

DEFAULT_BROKER = "kafka://localhost:9092"
DEFAULT_CATALOG = "config/services.yaml"
DEFAULT_WEB_PORT = 6066
SEGMENTS_FORMATS = ("many", "single")
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_APP_ID = "slawatch"
DEFAULT_EVENTS_TOPIC = "component-events"
DEFAULT_DLQ_TOPIC = "component-events-dlq"
#: The segments topic of app id ``a`` unless named: ``a-service-segments`` (internal topics
#: carry the app id, so two apps on one broker never read each other's).
SEGMENTS_SUFFIX = "-service-segments"
DEFAULT_PARTITIONS = 8
DEFAULT_ALLOWED_LATENESS = "10m"

STORES = ("auto", "memory", "rocksdb")

#: Faust settings that decide how fast a worker starts consuming, measured on tansu
#: (2 cores, one worker, empty group; time from process start to the first event
#: processed):
#:
#: * defaults: ~32 s. The group join is held by the coordinator for about half the
#:   session timeout (60 s default) waiting for other members; nothing else is slow.
#: * ``broker_session_timeout=10`` + ``broker_heartbeat_interval=1``: ~7 s (join 5 s).
#:   ``6`` gives ~4.7 s, but leaves little slack for a busy 2-core host before the
#:   coordinator evicts a member that is merely slow; 10 s is the compromise, and it is
#:   also how long a SIGKILLed worker's partitions wait before moving to a survivor.
#: * ``broker_rebalance_timeout`` alone (2 s .. 8 s) does not shorten the first join.
#: * ``broker_max_poll_records=5000`` and ``stream_wait_empty=False`` made the worker
#:   stop processing in an earlier measurement: left at their defaults.
FAUST_TUNING: dict[str, Any] = {
    "broker_session_timeout": 10.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 20.0,
    # Commit often: after a crash at most this much is redelivered (and recognised as
    # duplicates by the trackers, so redelivery costs time, not correctness).
    "broker_commit_interval": 1.0,
    "stream_recovery_delay": 0.0,
    "consumer_auto_offset_reset": "earliest",
    # Partitions added to the input topic are seen within this time (a metadata change
    # of a subscribed topic makes the group rebalance; aiokafka's default is 5 min).
    "consumer_metadata_max_age_ms": 10_000,
    # Faust's fetch size (4 MiB per partition) is kept: 8 MiB read a 1M-event backlog
    # in 21 s instead of 26 s (tansu answers a fetch only when its 100 ms wait runs
    # out, so fewer, larger fetches are faster), but raised the memory high-water mark
    # of a backlog by 130 MiB and made the flood test's RSS bound flaky. Operators can
    # set it through SLAWATCH_FAUST_SETTINGS='{"consumer_max_fetch_size": 8388608}'.
    #
    # A checkpoint hands the producer every changed tracker at once, with the consumer's
    # batch lock held. aiokafka keeps one request in flight per broker, and a send whose
    # partition's batch is full waits until the sender took that batch: with Faust's
    # 16 KiB batches a checkpoint of a few hundred KiB waited for several broker round
    # trips, and the pipeline with it (at 2,000 events/s over 50 services, services
    # checkpoints of 100-400 ms, the slowest 1% of events waiting in them:
    # bench/latency_trace.py). 256 KiB holds such a checkpoint in one request, and stays
    # well under a Kafka broker's default limit of a record batch (1 MiB,
    # message.max.bytes). Batches grow with what they hold, so the bound costs memory
    # only while that much waits.
    "producer_max_batch_size": 262_144,
}


def _env_int(name: str, default: int) -> int:
    value = env_value(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"slawatch worker: ${name}={value!r} is not an integer") from None


@dataclass(frozen=True)
class WorkerSettings:
    """Everything one worker process needs; built by ``from_args``."""

    #: The broker and its security settings: the one type the publisher uses too.
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    catalog: Path = Path(DEFAULT_CATALOG)
    web_host: str = DEFAULT_WEB_HOST
    web_port: int = DEFAULT_WEB_PORT
    data_dir: Path = Path("slawatch-data")
    app_id: str = DEFAULT_APP_ID
    events_topic: str = DEFAULT_EVENTS_TOPIC
    dlq_topic: str = DEFAULT_DLQ_TOPIC
    #: Empty: ``<app_id>-service-segments``.
    segments_topic: str = ""
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    allowed_lateness: float = 600.0
    store: str = "memory"
    standby_replicas: int = 1
    catalog_poll_interval: float = 2.0
    batch_size: int = 1000
    batch_within: float = 0.1
    log_level: str = "info"
    alertmanager_label: str = "instance"
    alertmanager_alertnames: tuple[str, ...] = ()
    alertmanager_pattern: str | None = None
    web_config_file: Path | None = None
    web_peer_ca_file: str | None = None
    web_max_connections: int = 256
    web_header_timeout: float = 10.0
    web_body_timeout: float = 30.0
    ingest: bool = False
    ingest_token_file: Path | None = None
    gc_threshold: tuple[int, int, int] = gcpolicy.DEFAULT
    #: Which broker implementation: patches only the embedded one needs apply only to it.
    broker_kind: str = "kafka"
    #: ``many``: one segments message per segments partition a fetch; ``single``: one
    #: per service, the only form releases up to 0.1.0 read (for a rolling upgrade).
    segments_format: str = "many"

    def __post_init__(self) -> None:
        if not self.segments_topic:
            object.__setattr__(self, "segments_topic", self.app_id + SEGMENTS_SUFFIX)

    @property
    def reroute_topic(self) -> str:
        """Internal topic for events that arrived on another partition than their hash.

        Producers with a non-Kafka partitioner (librdkafka's default is CRC32) would
        otherwise split one component's history over two partitions.
        """
        return f"{self.app_id}-component-events-rerouted"

    @property
    def store_url(self) -> str:
        return "rocksdb://" if self.store == "rocksdb" else "memory://"

    def describe(self) -> str:
        """One log line of the effective settings; secrets are replaced by ***."""
        auth = self.kafka.describe()
        return (
            f"broker={self.broker} security={auth} catalog={self.catalog} "
            f"web={self.web_scheme}://{self.web_host}:{self.web_port} "
            f"web_config={self.web_config_file or '-'} "
            f"ingest={'on' if self.ingest else 'off'}"
            f"{' (token)' if self.ingest and self.ingest_token_file else ''} "
            f"store={self.store} "
            f"data_dir={self.data_dir} app_id={self.app_id} "
            f"topics={self.events_topic},{self.segments_topic},{self.dlq_topic} "
            f"partitions={self.partitions} replication={self.replication_factor} "
            f"allowed_lateness={self.allowed_lateness:g}s "
            f"gc_threshold={','.join(map(str, self.gc_threshold))} "
            f"broker_kind={self.broker_kind} segments_format={self.segments_format}"
        )

    @property
    def web_scheme(self) -> str:
        from agents.web.auth import WebConfigError

        try:
            return "https" if self.web_config().tls is not None else "http"
        except WebConfigError:
            return "http"

    def web_config(self) -> Any:
        """The parsed ``--web-config-file`` (``agents.web.auth.WebConfig``); raises
        ``WebConfigError`` naming the file and field."""
        from agents.web.auth import load_web_config

        return load_web_config(self.web_config_file)

    @property
    def broker(self) -> str:
        return self.kafka.broker

    def ssl_context(self) -> ssl.SSLContext | None:
        return self.kafka.ssl_context()

    def faust_credentials(self) -> Any:
        """Faust credentials object for the security settings (None for PLAINTEXT)."""
        return self.kafka.faust_credentials()

    def validate(self) -> list[str]:
        """Problems that make the settings unusable, each as a sentence."""
        problems: list[str] = []
        if self.partitions < 1:
            problems.append(f"--partitions must be >= 1, not {self.partitions}")
        if self.replication_factor < 1:
            problems.append(f"--replication-factor must be >= 1, not {self.replication_factor}")
        if not 0 < self.web_port < 65536:
            problems.append(f"--web-port {self.web_port} is not a TCP port")
        problems += [p for p in self.kafka.validate() if not p.startswith("--broker")]
        if self.store not in ("memory", "rocksdb"):
            problems.append(f"--store must be one of {', '.join(STORES)}")
        for name in ("web_peer_ca_file",):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                problems.append(f"--{name.replace('_', '-')} {value} is not a file")
        for name in ("web_header_timeout", "web_body_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.replace('_', '-')} must be > 0")
        if self.web_max_connections < 1:
            problems.append(f"--web-max-connections must be >= 1, not {self.web_max_connections}")
        if self.alertmanager_pattern is not None:
            import re

            try:
                re.compile(self.alertmanager_pattern)
            except re.error as exc:
                problems.append(f"--alertmanager-component-pattern: {exc}")
        problems += self._web_problems()
        return problems

    def web_warnings(self) -> list[str]:
        """What is allowed but unwise: the API readable by anyone who reaches the port."""
        from agents.web.auth import WebConfigError

        try:
            config = self.web_config()
        except WebConfigError:
            return []  # reported by validate()
        if _is_loopback(self.web_host) or config.requires_credentials:
            return []
        return [f"the web server on {self.web_host} answers /metrics and /api/* to anyone who "
                "can reach it: set basic_auth_users (and tls_server_config) in --web-config-file"]

    def _web_problems(self) -> list[str]:
        from agents.web.auth import WebConfigError, read_token_file

        try:
            config = self.web_config()
        except WebConfigError as exc:
            return [f"--web-config-file: {exc}"]
        if self.ingest_token_file is not None:
            try:
                read_token_file(self.ingest_token_file)
            except WebConfigError as exc:
                return [f"--ingest-token-file: {exc}"]
        if self.ingest_token_file is not None and not self.ingest:
            return ["--ingest-token-file is set but ingest is off: add --ingest (SLAWATCH_INGEST=1)"]
        if self.ingest and not _is_loopback(self.web_host) and not (
            self.ingest_token_file is not None or config.requires_credentials
        ):
            return [
                f"--ingest on {self.web_host}, an address other than loopback, needs credentials: "
                "--ingest-token-file, or basic_auth_users (or client certificates) in "
                "--web-config-file; anyone who can reach the port could otherwise forge events"
            ]
        return []


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env_flag(name: str) -> bool:
    value = (env_value(name) or "").lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"slawatch worker: ${name}={value!r} is not 1/0, true/false, yes/no or on/off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's flags; each defaults to its SLAWATCH_* variable, then to CONTRACT §5."""
    g = parser.add_argument_group("basics")
    g.add_argument("--broker", default=env_value("SLAWATCH_BROKER", DEFAULT_BROKER),
                   help="Kafka bootstrap URL(s), e.g. kafka://host:9092;host2:9092 "
                        "(env SLAWATCH_BROKER, default %(default)s)")
    g.add_argument("--catalog", default=env_value("SLAWATCH_CATALOG", DEFAULT_CATALOG),
                   help="service catalog YAML (env SLAWATCH_CATALOG, default %(default)s); "
                        "reloaded on SIGHUP and when the file changes")
    g.add_argument("--web-port", type=int, default=_env_int("SLAWATCH_WEB_PORT", DEFAULT_WEB_PORT),
                   help="port of /metrics and the JSON API (env SLAWATCH_WEB_PORT, "
                        "default %(default)s)")
    g.add_argument("--web-host", default=env_value("SLAWATCH_WEB_HOST", DEFAULT_WEB_HOST),
                   help="address the web server binds (env SLAWATCH_WEB_HOST, default "
                        "%(default)s; another address needs --web-config-file with "
                        "basic_auth_users and tls_server_config, see README 'Security')")
    g.add_argument("--data-dir", default=env_value("SLAWATCH_DATA_DIR", "slawatch-data"),
                   help="local state directory (RocksDB tables) (env SLAWATCH_DATA_DIR, "
                        "default %(default)s)")
    g.add_argument("--store", choices=STORES, default=env_value("SLAWATCH_STORE", "memory"),
                   help="table store: memory (rebuilt from the changelog topics on start), "
                        "rocksdb (kept in --data-dir: a restart reads only the changelog "
                        "tail; needs rocksdict, pip install 'slawatch[rocksdb]'), auto = "
                        "rocksdb if rocksdict is installed (env SLAWATCH_STORE, default "
                        "%(default)s)")
    g.add_argument("--allowed-lateness", default=env_value("SLAWATCH_ALLOWED_LATENESS",
                                                      DEFAULT_ALLOWED_LATENESS),
                   help="events older than the newest of their component minus this are "
                        "'late' (env SLAWATCH_ALLOWED_LATENESS, default %(default)s)")
    g.add_argument("--log-level", default=env_value("SLAWATCH_LOG_LEVEL", "info"),
                   choices=("debug", "info", "warning", "error"),
                   help="env SLAWATCH_LOG_LEVEL, default %(default)s")

    g.add_argument("--gc-threshold",
                   default=env_value("SLAWATCH_GC_THRESHOLD", ",".join(map(str, gcpolicy.DEFAULT))),
                   help="the process's garbage-collector thresholds, gen0,gen1,gen2 (env "
                        "SLAWATCH_GC_THRESHOLD, default %(default)s; CPython's own is "
                        "700,10,10: 10-20%% slower at 10,000 components)")
    g.add_argument("--broker-kind", choices=("kafka", "tansu"),
                   default=env_value("SLAWATCH_BROKER_KIND", "kafka"),
                   help="the broker's implementation (env SLAWATCH_BROKER_KIND, default "
                        "%(default)s); `tansu` (the embedded broker of the demo and the "
                        "tests) turns on the patches for its quirks (agents/transport/)")
    g.add_argument("--segments-format", choices=SEGMENTS_FORMATS,
                   default=env_value("SLAWATCH_SEGMENTS_FORMAT", "many"),
                   help="how stage 1 writes the service segments topic (env "
                        "SLAWATCH_SEGMENTS_FORMAT, default %(default)s): `many`, one message "
                        "per segments partition a fetch; `single`, one per service, the only "
                        "form releases up to 0.1.0 read. Every release reads both: set "
                        "`single` on upgraded workers while workers of 0.1.0 still run in "
                        "the group (a rolling upgrade), then restart them without it")
    g.add_argument("--alertmanager-label", default=env_value("SLAWATCH_ALERTMANAGER_LABEL", "instance"),
                   help="alert label that names the component in POST /ingest/alertmanager, or "
                        "several separated by commas, the first present wins (env "
                        "SLAWATCH_ALERTMANAGER_LABEL, default %(default)s)")
    g.add_argument("--alertmanager-alertnames", default=env_value("SLAWATCH_ALERTMANAGER_ALERTNAMES", ""),
                   help="only these alertnames (comma-separated) mark components down; others "
                        "are skipped (env SLAWATCH_ALERTMANAGER_ALERTNAMES, default: all)")
    g.add_argument("--alertmanager-component-pattern",
                   default=env_value("SLAWATCH_ALERTMANAGER_COMPONENT_PATTERN"),
                   help="regular expression whose first group, matched against the label's "
                        "value, is the component id, e.g. '([^:]+)(:[0-9]+)?' drops a port "
                        "(env SLAWATCH_ALERTMANAGER_COMPONENT_PATTERN)")
    w = parser.add_argument_group("web security (README 'Security')")
    w.add_argument("--web-config-file", default=env_value("SLAWATCH_WEB_CONFIG_FILE"),
                   help="TLS and basic auth of every HTTP endpoint, in Prometheus "
                        "exporter-toolkit's format (env SLAWATCH_WEB_CONFIG_FILE)")
    w.add_argument("--web-peer-ca-file", default=env_value("SLAWATCH_WEB_PEER_CA_FILE"),
                   help="CA bundle that signed the other workers' web certificates, for the "
                        "requests a worker forwards (env SLAWATCH_WEB_PEER_CA_FILE; default: "
                        "the system CAs and the certificates in cert_file)")
    w.add_argument("--web-max-connections", type=int,
                   default=_env_int("SLAWATCH_WEB_MAX_CONNECTIONS", 256),
                   help="HTTP connections served at once; more get 503 (env "
                        "SLAWATCH_WEB_MAX_CONNECTIONS, default %(default)s)")
    w.add_argument("--web-header-timeout", type=float,
                   default=float(env_value("SLAWATCH_WEB_HEADER_TIMEOUT") or 10),
                   help="seconds a request's headers may take from the connection (or the last "
                        "response) on; idle keep-alive connections close after it too (env "
                        "SLAWATCH_WEB_HEADER_TIMEOUT, default %(default)s)")
    w.add_argument("--web-body-timeout", type=float,
                   default=float(env_value("SLAWATCH_WEB_BODY_TIMEOUT") or 30),
                   help="seconds an ingest body may take to arrive (env SLAWATCH_WEB_BODY_TIMEOUT, "
                        "default %(default)s)")
    w.add_argument("--ingest", action="store_true", default=_env_flag("SLAWATCH_INGEST"),
                   help="serve POST /ingest/events and /ingest/alertmanager (env "
                        "SLAWATCH_INGEST=1; off by default: 404)")
    w.add_argument("--ingest-token-file", default=env_value("SLAWATCH_INGEST_TOKEN_FILE"),
                   help="file holding the bearer token ingest requires (env "
                        "SLAWATCH_INGEST_TOKEN_FILE); read again when it changes")
    t = parser.add_argument_group("topics (all workers of a group must agree)")
    t.add_argument("--app-id", default=env_value("SLAWATCH_APP_ID", DEFAULT_APP_ID),
                   help="consumer group and prefix of internal topics (env SLAWATCH_APP_ID, "
                        "default %(default)s)")
    t.add_argument("--events-topic", default=env_value("SLAWATCH_EVENTS_TOPIC", DEFAULT_EVENTS_TOPIC),
                   help="input topic (env SLAWATCH_EVENTS_TOPIC, default %(default)s)")
    t.add_argument("--dlq-topic", default=env_value("SLAWATCH_DLQ_TOPIC", DEFAULT_DLQ_TOPIC),
                   help="rejected messages with their reason (env SLAWATCH_DLQ_TOPIC, default "
                        "%(default)s)")
    t.add_argument("--segments-topic", default=env_value("SLAWATCH_SEGMENTS_TOPIC", ""),
                   help="repartition topic keyed by service (internal; env "
                        f"SLAWATCH_SEGMENTS_TOPIC, default <app-id>{SEGMENTS_SUFFIX})")
    t.add_argument("--partitions", type=int,
                   default=_env_int("SLAWATCH_PARTITIONS", DEFAULT_PARTITIONS),
                   help="partitions of the worker's own topics (re-route, segments, "
                        "changelogs) and of an input topic it creates; an existing input "
                        "topic may have any count (env SLAWATCH_PARTITIONS, default "
                        "%(default)s)")
    t.add_argument("--replication-factor", type=int,
                   default=_env_int("SLAWATCH_REPLICATION_FACTOR", 1),
                   help="replication of the topics the worker creates (env "
                        "SLAWATCH_REPLICATION_FACTOR, default %(default)s)")
    t.add_argument("--standby-replicas", type=int,
                   default=_env_int("SLAWATCH_STANDBY_REPLICAS", 1),
                   help="standby copies of each table partition kept by other workers, for "
                        "fast failover (env SLAWATCH_STANDBY_REPLICAS, default %(default)s)")

    add_security_arguments(parser)


def _resolve_store(choice: str) -> str:
    if choice != "auto":
        return choice
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return "memory"
    return "rocksdb"


def from_args(args: argparse.Namespace) -> WorkerSettings:
    """Settings from parsed flags (whose defaults already came from the environment)."""
    from streams.durations import parse_duration

    try:
        lateness = parse_duration(args.allowed_lateness)
    except ValueError as exc:
        raise SystemExit(f"slawatch worker: --allowed-lateness: {exc}") from None
    try:
        gc_threshold = gcpolicy.parse(args.gc_threshold)
    except ValueError as exc:
        raise SystemExit(f"slawatch worker: --gc-threshold {exc}") from None
    return WorkerSettings(
        kafka=KafkaConnection.from_args(args),
        catalog=Path(args.catalog),
        web_host=args.web_host,
        web_port=args.web_port,
        data_dir=Path(args.data_dir),
        app_id=args.app_id,
        events_topic=args.events_topic,
        dlq_topic=args.dlq_topic,
        segments_topic=args.segments_topic,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        standby_replicas=args.standby_replicas,
        allowed_lateness=lateness,
        store=_resolve_store(args.store),
        log_level=args.log_level,
        alertmanager_label=args.alertmanager_label,
        alertmanager_alertnames=tuple(n.strip() for n in args.alertmanager_alertnames.split(",")
                                      if n.strip()),
        alertmanager_pattern=args.alertmanager_component_pattern or None,
        web_config_file=Path(args.web_config_file) if args.web_config_file else None,
        web_peer_ca_file=args.web_peer_ca_file,
        web_max_connections=args.web_max_connections,
        web_header_timeout=args.web_header_timeout,
        web_body_timeout=args.web_body_timeout,
        ingest=bool(args.ingest),
        ingest_token_file=Path(args.ingest_token_file) if args.ingest_token_file else None,
        gc_threshold=gc_threshold,
        broker_kind=args.broker_kind,
        segments_format=args.segments_format,
    )
