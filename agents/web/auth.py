"""Who may talk to the worker's web server: the web config file and the ingest token.

``--web-config-file`` takes the file format of Prometheus' exporter-toolkit
(``--web.config.file`` of node_exporter and Prometheus itself), so a scrape config with
``basic_auth`` and ``tls_config`` works unchanged:

.. code-block:: yaml

    tls_server_config:
      cert_file: /etc/slawatch/tls.crt
      key_file: /etc/slawatch/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: /etc/slawatch/clients-ca.crt
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Unknown keys are refused, as exporter-toolkit does; the few settings Python's ``ssl``
cannot honour (Go cipher-suite and curve names, client cert modes that skip
verification, inline PEM) are refused by name rather than silently ignored. Like
exporter-toolkit, the file is read again when it changes (checked at most once a
second): a rotated password or certificate applies without a restart; a bad new file is
logged and the last good one stays.

bcrypt is slow on purpose (~60 ms at cost 10), so checks run on a thread, at most
``MAX_PENDING_CHECKS`` at a time, and a good (user, password) is remembered (by its
SHA-256, never in clear) so that a scraper costs one bcrypt per process, not per scrape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import ssl
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("slawatch.web.auth")

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "client_allowed_sans", "prefer_server_cipher_suites"}
_TLS_REFUSED = {
    "cert": "inline PEM is not supported: use cert_file",
    "key": "inline PEM is not supported: use key_file",
    "client_ca": "inline PEM is not supported: use client_ca_file",
    "cipher_suites": "Go cipher-suite names cannot be mapped to OpenSSL's: remove it "
                     "(OpenSSL's defaults for min_version apply)",
    "curve_preferences": "not supported: remove it",
}
_HTTP_KEYS = {"http2", "headers"}
_HEADERS = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
            "X-XSS-Protection", "Strict-Transport-Security"}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")

#: bcrypt checks waiting or running at once; more get 503 (a flood of guesses must not
#: queue without bound).
MAX_PENDING_CHECKS = 32
#: (user, password) pairs remembered as good.
CACHE_SIZE = 256
#: bcrypt (cost 10) of a random string: unknown users are checked against it.
_DUMMY_HASH = b"$2b$10$pr5/EPVYvRQ78XVZZpLxVe8KMI2E0X6uDEqOi990cdazfBtFGSpFe"
#: How often (s) at most the files are looked at for changes.
RELOAD_CHECK_INTERVAL = 1.0


class WebConfigError(ValueError):
    """The web config file (or the token file) is unusable; the message names file and field."""


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    client_allowed_sans: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def verifies_clients(self) -> bool:
        return self.client_auth_type == "RequireAndVerifyClientCert"


@dataclass(frozen=True)
class WebConfig:
    """A parsed web config file (``path`` None: no file, nothing required)."""

    path: Path | None = None
    tls: TLSServerConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict, repr=False)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def requires_credentials(self) -> bool:
        """Does every request need a password or a verified client certificate?"""
        return bool(self.basic_auth_users) or (self.tls is not None and self.tls.verifies_clients)

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The server side TLS context (None without ``tls_server_config``)."""
        tls = self.tls
        if tls is None:
            return None
        where = f"{self.path}: tls_server_config"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _VERSIONS[tls.min_version]
        ctx.maximum_version = _VERSIONS[tls.max_version]
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"{where}: cert_file {tls.cert_file} / key_file {tls.key_file}: "
                                 f"{exc}") from None
        ctx.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
        if tls.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(tls.client_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(f"{where}: client_ca_file {tls.client_ca_file}: {exc}") from None
        if tls.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        return ctx

    def peer_ssl_context(self, ca_file: str | None = None) -> ssl.SSLContext | None:
        """The client TLS context for requests to other workers of the group.

        Peers are verified against the system CAs, ``ca_file`` and the certificates in
        ``cert_file`` (a self-signed certificate, or a chain that includes its CA); when
        peers require client certificates, this worker presents its own.
        """
        tls = self.tls
        if tls is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # The certificate in cert_file is trusted as it is (workers sharing one
        # certificate), not only as the root of a chain.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.load_verify_locations(cafile=str(tls.cert_file))
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        if tls.client_auth_type != "NoClientCert":
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        return ctx


def _expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise WebConfigError(f"{where}: expected {names}, got {type(value).__name__}")
    return value


def _file(value: Any, where: str, base: Path) -> Path:
    path = Path(_expect(value, str, where))
    if not path.is_absolute():
        path = base / path  # exporter-toolkit: relative to the config file
    if not path.is_file():
        raise WebConfigError(f"{where}: {path} is not a readable file")
    return path


def parse_web_config(data: Any, source: Path) -> WebConfig:
    """A web config from its YAML data; ``WebConfigError`` names the file and the field."""
    if data is None:
        data = {}
    where = str(source)
    _expect(data, dict, where)
    for key in data:
        if key not in _TOP_KEYS:
            hint = " (not supported by slawatch)" if key == "rate_limit" else ""
            raise WebConfigError(f"{where}: unknown field {key!r}{hint}")
    base = source.parent
    tls = None
    raw_tls = data.get("tls_server_config")
    if raw_tls is not None:
        w = f"{where}: tls_server_config"
        _expect(raw_tls, dict, w)
        for key in raw_tls:
            if key in _TLS_REFUSED:
                raise WebConfigError(f"{w}.{key}: {_TLS_REFUSED[key]}")
            if key not in _TLS_KEYS:
                raise WebConfigError(f"{w}: unknown field {key!r}")
        for key in ("cert_file", "key_file"):
            if not raw_tls.get(key):
                raise WebConfigError(f"{w}.{key}: missing (both cert_file and key_file are needed)")
        auth = raw_tls.get("client_auth_type", "NoClientCert")
        if auth not in _CLIENT_AUTH:
            raise WebConfigError(
                f"{w}.client_auth_type: {auth!r} is not one of {', '.join(_CLIENT_AUTH)} (modes "
                "that accept unverified certificates are not supported)")
        ca = raw_tls.get("client_ca_file")
        if auth != "NoClientCert" and not ca:
            raise WebConfigError(f"{w}.client_ca_file: needed with client_auth_type {auth}")
        versions = {}
        for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
            value = raw_tls.get(key, default)
            if value not in _VERSIONS:
                raise WebConfigError(f"{w}.{key}: {value!r} is not one of {', '.join(_VERSIONS)}")
            versions[key] = value
        sans = tuple(str(s) for s in _expect(raw_tls.get("client_allowed_sans") or [], list,
                                             f"{w}.client_allowed_sans"))
        if sans and auth != "RequireAndVerifyClientCert":
            raise WebConfigError(f"{w}.client_allowed_sans: needs client_auth_type "
                                 "RequireAndVerifyClientCert")
        tls = TLSServerConfig(
            cert_file=_file(raw_tls["cert_file"], f"{w}.cert_file", base),
            key_file=_file(raw_tls["key_file"], f"{w}.key_file", base),
            client_auth_type=auth,
            client_ca_file=_file(ca, f"{w}.client_ca_file", base) if ca else None,
            min_version=versions["min_version"],
            max_version=versions["max_version"],
            client_allowed_sans=sans,
            prefer_server_cipher_suites=bool(raw_tls.get("prefer_server_cipher_suites", True)),
        )
    headers: dict[str, str] = {}
    raw_http = data.get("http_server_config")
    if raw_http is not None:
        w = f"{where}: http_server_config"
        _expect(raw_http, dict, w)
        for key in raw_http:
            if key not in _HTTP_KEYS:
                raise WebConfigError(f"{w}: unknown field {key!r}")
        for name, value in _expect(raw_http.get("headers") or {}, dict, f"{w}.headers").items():
            if name not in _HEADERS:
                raise WebConfigError(f"{w}.headers: {name!r} is not one of {', '.join(sorted(_HEADERS))}")
            if value:
                headers[name] = _expect(value, str, f"{w}.headers.{name}")
    users: dict[str, str] = {}
    raw_users = data.get("basic_auth_users")
    if raw_users is not None:
        w = f"{where}: basic_auth_users"
        for user, hashed in _expect(raw_users, dict, w).items():
            if not isinstance(user, str) or not user or ":" in user:
                raise WebConfigError(f"{w}: user name {user!r} must be a non-empty string without ':'")
            if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
                # The value is a secret: say what is wrong, never echo it.
                raise WebConfigError(f"{w}.{user}: not a bcrypt hash ($2y$/$2b$/$2a$, 60 characters)")
            users[user] = hashed
    config = WebConfig(path=source, tls=tls, basic_auth_users=users, headers=headers)
    config.server_ssl_context()  # the certificate and key must load now, not at the first request
    return config


def load_web_config(path: str | Path | None) -> WebConfig:
    """Read and check ``--web-config-file`` (None or "": no file, nothing required)."""
    if not path:
        return WebConfig()
    import yaml

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_web_config(data, source)


def read_token_file(path: str | Path) -> bytes:
    """The bearer token in ``path``, surrounding whitespace removed (refused if empty)."""
    source = Path(path)
    try:
        token = source.read_bytes().strip()
    except OSError as exc:
        raise WebConfigError(f"{source}: ingest token file cannot be read: {exc.strerror or exc}") from None
    if not token:
        raise WebConfigError(f"{source}: ingest token file is empty")
    if len(token) < 16:
        raise WebConfigError(f"{source}: ingest token is {len(token)} bytes; use at least 16")
    return token


class _Watched:
    """A file's parsed content, parsed again when its mtime or size changes."""

    def __init__(self, path: Path, parse: Any, value: Any) -> None:
        self.path = path
        self._parse = parse
        self.value = value
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> Any:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_INTERVAL:
            return self.value
        self._checked = now
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return self.value
        self._stamp = stamp
        try:
            self.value = self._parse(self.path)
        except WebConfigError as exc:
            log.error("%s changed but is refused, the last good one stays: %s", self.path, exc)
        else:
            log.info("%s reloaded", self.path)
        return self.value


class Authenticator:
    """Checks requests against the web config's users and the ingest token."""

    def __init__(self, config: WebConfig, token_file: str | None = None) -> None:
        self._config = _Watched(config.path, load_web_config, config) if config.path else None
        self._static = config
        self._token = (_Watched(Path(token_file), read_token_file, read_token_file(token_file))
                       if token_file else None)
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None
        # A hash to check unknown users against, so that they take as long as known ones.
        self._dummy = _DUMMY_HASH

    @property
    def config(self) -> WebConfig:
        return self._config.current() if self._config is not None else self._static

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def token_ok(self, authorization: str | None) -> bool:
        if self._token is None or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode("utf-8", "replace"), self._token.current())

    async def basic_ok(self, authorization: str | None) -> bool | None:
        """True/False for good/bad basic credentials; None when too many checks wait."""
        users = self.config.basic_auth_users
        if not users or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user_b, sep, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        if not sep:
            return False
        user = user_b.decode("utf-8", "replace")
        hashed = users.get(user)
        target = hashed.encode() if hashed is not None else self._dummy
        key = hashlib.sha256(user_b + b"\0" + password + b"\0" + target).digest()
        if key in self._good:
            self._good.move_to_end(key)
            return hashed is not None
        if self._pending >= MAX_PENDING_CHECKS:
            return None
        self._pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._executor(), _checkpw,
                                                                  password, target)
        finally:
            self._pending -= 1
        if ok and hashed is not None:
            self._good[key] = None
            if len(self._good) > CACHE_SIZE:
                self._good.popitem(last=False)
            return True
        return False

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slawatch-bcrypt")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # the dummy hash, or a password bcrypt refuses (> 72 bytes in 5.x)
        return False


def peer_sans(peercert: Any) -> set[str]:
    """The subjectAltName values of a peer certificate from ``ssl``'s ``getpeercert()``."""
    if not peercert:
        return set()
    return {value for _kind, value in peercert.get("subjectAltName", ())}
