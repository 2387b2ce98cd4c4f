"""How slawatch connects to Kafka: one settings type for the worker and the publisher.

Security protocol, SASL (PLAIN, SCRAM-SHA-256/512) and TLS, with their flags and
environment variables, in one place. Secrets are best passed as files
(``--sasl-password-file`` / ``SLAWATCH_SASL_PASSWORD_FILE``, and the same for the TLS
key's password): a flag is visible to every user in ``ps``, an environment variable to
the process's owner in ``/proc/PID/environ``. The password never appears in ``repr``
or in any log line; a password given as a flag is refused with a pointer to the file.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("slawatch.connection")

DEFAULT_BROKER = "kafka://localhost:9092"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def env_value(name: str, default: str | None = None) -> str | None:
    """The environment variable ``name``; an empty value counts as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def bootstrap_servers(broker: str) -> list[str]:
    """``kafka://h1:9092;h2:9092`` (Faust style) or ``h1:9092,h2`` -> ``["h1:9092", ...]``."""
    servers: list[str] = []
    for part in broker.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "://" in part:
            scheme, part = part.split("://", 1)
            if scheme not in ("kafka", "aiokafka", "tcp"):
                raise ValueError(f"unsupported broker URL scheme {scheme!r} in {broker!r}")
        part = part.rstrip("/")
        servers.append(part if ":" in part else f"{part}:9092")
    if not servers:
        raise ValueError(f"no broker address in {broker!r}")
    return servers


def read_secret(path: str | Path, what: str) -> str:
    """A secret from a file (one line; the trailing newline removed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{what} file {path}: {exc.strerror or exc}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"{what} file {path} is empty")
    return secret


@dataclass(frozen=True)
class KafkaConnection:
    """Broker address and security settings, shared by the worker, `publish`,
    `simulate` and the demo."""

    broker: str = DEFAULT_BROKER
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    #: Problems found while reading the settings (a secret file that cannot be read).
    errors: tuple[str, ...] = ()
    #: The password came as a flag: visible in `ps` to every user of the machine.
    password_on_command_line: bool = False

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def describe(self) -> str:
        """For logs: the protocol, mechanism and user; never the password."""
        text = self.security_protocol
        if self.uses_sasl:
            text += f" {self.sasl_mechanism} user={self.sasl_username!r} password=***"
        return text

    def validate(self) -> list[str]:
        problems = list(self.errors)
        try:
            bootstrap_servers(self.broker)
        except ValueError as exc:
            problems.append(f"--broker: {exc}")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            problems.append(f"--security-protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                problems.append(f"--sasl-mechanism must be one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or self.sasl_password is None:
                problems.append("SASL needs --sasl-username and a password (--sasl-password-file "
                                "or $SLAWATCH_SASL_PASSWORD_FILE)")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value and not os.path.isfile(value):
                problems.append(f"--{name.replace('_', '-')} {value} is not a file")
        return problems

    def warnings(self) -> list[str]:
        out = []
        if self.uses_sasl and self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
            out.append("SASL PLAIN over SASL_PLAINTEXT sends the password in clear text to the "
                       "broker: use SASL_SSL, or a SCRAM mechanism")
        if self.password_on_command_line:
            out.append("--sasl-password is visible to every user in `ps`: use --sasl-password-file "
                       "or $SLAWATCH_SASL_PASSWORD_FILE")
        return out

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for SSL/SASL_SSL (CA, client certificate, key password)."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=self.ssl_key_password)
        return ctx

    def faust_credentials(self) -> Any:
        """Faust's credentials object (None for PLAINTEXT)."""
        import faust

        ctx = self.ssl_context()
        if self.uses_sasl:
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         mechanism=self.sasl_mechanism, ssl_context=ctx)
        if ctx is not None:
            return faust.SSLCredentials(ctx)
        return None

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments (the password included: never log this)."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers(self.broker),
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            cfg["sasl_mechanism"] = self.sasl_mechanism
            cfg["sasl_plain_username"] = self.sasl_username
            cfg["sasl_plain_password"] = self.sasl_password
        if self.uses_tls:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, name)
                if value:
                    cfg[name] = value
            if self.ssl_key_password is not None:
                cfg["ssl_password"] = self.ssl_key_password
        return cfg

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> KafkaConnection:
        """From the flags of ``add_security_arguments`` (and ``--broker``)."""
        errors: list[str] = []

        def secret(flag_value: str | None, file_flag: str | None, env: str, what: str) -> str | None:
            if flag_value is not None:
                return flag_value
            path = file_flag or env_value(f"{env}_FILE")
            if path:
                try:
                    return read_secret(path, what)
                except ValueError as exc:
                    errors.append(str(exc))
                    return None
            return env_value(env)

        password = secret(getattr(args, "sasl_password", None), getattr(args, "sasl_password_file", None),
                          "SLAWATCH_SASL_PASSWORD", "SASL password")
        key_password = secret(None, getattr(args, "ssl_key_password_file", None),
                              "SLAWATCH_SSL_KEY_PASSWORD", "TLS key password")
        return cls(
            broker=args.broker,
            security_protocol=args.security_protocol,
            sasl_mechanism=args.sasl_mechanism,
            sasl_username=args.sasl_username,
            sasl_password=password,
            ssl_cafile=args.ssl_cafile,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            ssl_key_password=key_password,
            errors=tuple(errors),
            password_on_command_line=getattr(args, "sasl_password", None) is not None,
        )


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """The Kafka security flags, each defaulting to its SLAWATCH_* variable."""
    s = parser.add_argument_group("Kafka security (for real clusters)")
    s.add_argument("--security-protocol", choices=SECURITY_PROTOCOLS,
                   default=env_value("SLAWATCH_SECURITY_PROTOCOL", "PLAINTEXT"),
                   help="env SLAWATCH_SECURITY_PROTOCOL, default %(default)s")
    s.add_argument("--sasl-mechanism", choices=SASL_MECHANISMS,
                   default=env_value("SLAWATCH_SASL_MECHANISM", "PLAIN"),
                   help="env SLAWATCH_SASL_MECHANISM, default %(default)s")
    s.add_argument("--sasl-username", default=env_value("SLAWATCH_SASL_USERNAME"),
                   help="env SLAWATCH_SASL_USERNAME")
    s.add_argument("--sasl-password-file", default=None,
                   help="file holding the SASL password (or $SLAWATCH_SASL_PASSWORD_FILE; "
                        "$SLAWATCH_SASL_PASSWORD also works)")
    s.add_argument("--sasl-password", default=None, help=argparse.SUPPRESS)
    s.add_argument("--ssl-cafile", default=env_value("SLAWATCH_SSL_CAFILE"),
                   help="CA bundle that signed the brokers' certificates (env SLAWATCH_SSL_CAFILE)")
    s.add_argument("--ssl-certfile", default=env_value("SLAWATCH_SSL_CERTFILE"),
                   help="client certificate (mutual TLS; env SLAWATCH_SSL_CERTFILE)")
    s.add_argument("--ssl-keyfile", default=env_value("SLAWATCH_SSL_KEYFILE"),
                   help="client private key (mutual TLS; env SLAWATCH_SSL_KEYFILE)")
    s.add_argument("--ssl-key-password-file", default=None,
                   help="file holding the client key's password (or "
                        "$SLAWATCH_SSL_KEY_PASSWORD_FILE)")
