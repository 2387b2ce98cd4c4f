"""Who may read and write, tried as an outsider would (CONTRACT §8).

One real worker (tansu broker) behind a web config with TLS (a throwaway CA), bcrypt
basic auth and an ingest token, attacked over loopback: no, wrong and expired
credentials; a 4 MB array and 100k-deep nesting; half-sent headers and bodies; more
connections than the cap. What reached Kafka is read back from the topic's end. Also:
two workers forwarding to each other over TLS, and client certificates. The checks
without a process are in tests/unit/agents/web/test_auth.py.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.clients.broker import EmbeddedBroker
from agents.web import limits
from tests.fixtures_kafka import EXAMPLE_CATALOG, WorkerProcess, start_broker
from tests.support.tls import TLSFiles, bcrypt_hash, make_tls

PASSWORD = "correct horse battery staple"
TOKEN = "ingest-token-0123456789abcdef"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


# -- a real worker behind TLS, basic auth and an ingest token ----------------------------------


@dataclass
class Secured:
    worker: WorkerProcess
    broker: EmbeddedBroker
    tls: TLSFiles
    token_file: Path
    ctx: ssl.SSLContext
    basic: str
    web_file: Path

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0
                ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.worker.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def ingest(self, body: bytes, authorization: str | None = None,
               content_type: str = "application/json", **kw: Any) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        if authorization:
            headers["Authorization"] = authorization
        status, _, raw = self.request("POST", "/ingest/events", body, headers, **kw)
        return status, raw

    def raw_socket(self) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.worker.port), timeout=10)
        return self.ctx.wrap_socket(sock, server_hostname="127.0.0.1")

    def events_on_topic(self) -> list[dict[str, Any]]:
        """Every message of the input topic, read to its end."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.broker.bootstrap, group_id=None,
                                 enable_auto_commit=False, consumer_timeout_ms=2000)
        try:
            parts = [TopicPartition("component-events", p)
                     for p in consumer.partitions_for_topic("component-events") or ()]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            out: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                assert time.monotonic() < deadline, "could not read the topic to its end"
                for records in consumer.poll(timeout_ms=500).values():
                    out += [orjson.loads(r.value) for r in records]
            return out
        finally:
            consumer.close()


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, tls: TLSFiles) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("secured")
    web = tmp / "web.yml"
    web.write_text(f"""
tls_server_config: {{cert_file: {tls.cert}, key_file: {tls.key}}}
basic_auth_users: {{prometheus: '{bcrypt_hash(PASSWORD)}'}}
""")
    token_file = tmp / "ingest.token"
    token_file.write_text(TOKEN + "\n")
    catalog = tmp / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    broker = start_broker(tmp, 4)
    worker = WorkerProcess(broker, catalog, tmp, extra=[
        "--web-config-file", str(web), "--ingest", "--ingest-token-file", str(token_file),
        "--web-max-connections", "24", "--web-header-timeout", "3", "--web-body-timeout", "3",
    ])
    worker.scheme = "https"
    worker.ssl_context = ssl.create_default_context(cafile=str(tls.ca))
    worker.auth_headers = {"Authorization": basic_header("prometheus", PASSWORD)}
    try:
        worker.start()
        worker.wait_ready(timeout=90)
        yield Secured(worker, broker, tls, token_file, worker.ssl_context,
                      worker.auth_headers["Authorization"], web)
    finally:
        worker.stop()
        broker.stop()


def event(component: str, state: str, ident: str) -> bytes:
    return orjson.dumps({"component": component, "state": state, "ts": time.time() - 30, "id": ident})


@pytest.mark.integration
def test_without_valid_credentials_nothing_is_read_or_published(secured: Secured) -> None:
    s = secured
    before = {e.get("id") for e in s.events_on_topic()}
    wrong = [None, basic_header("prometheus", "wrong"), basic_header("nobody", PASSWORD),
             f"Bearer {TOKEN}", "Bearer ", "Basic", "Digest x"]
    for path in ("/metrics", "/api/services", "/api/worker", "/", "/api/services/email/outages",
                 "/nothing-here"):
        for authorization in wrong:
            status, headers, _ = s.request("GET", path, headers={"Authorization": authorization}
                                           if authorization else {})
            assert status == 401, (path, authorization, status)
            assert headers.get("Server") == "slawatch"
            assert "Basic" in headers.get("WWW-Authenticate", "")
        status, headers, _ = s.request("GET", path, headers={"Authorization": s.basic})
        assert status == (404 if path == "/nothing-here" else 200), (path, status)
        assert headers.get("Server") == "slawatch", headers  # no aiohttp/Python version
    # A request aiohttp cannot parse is answered before any middleware: no version there either.
    sock = s.raw_socket()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    sock.settimeout(5)
    head = sock.recv(4096).split(b"\r\n\r\n")[0]
    sock.close()
    assert head.startswith(b"HTTP/1.0 400") and b"\r\nServer: slawatch" in head, head
    assert b"aiohttp" not in head and b"Python" not in head
    for path in ("/healthz", "/readyz"):  # probes: open, and they say nothing more
        status, _, body = s.request("GET", path)
        assert status == 200 and set(orjson.loads(body)) <= {"status", "ready", "rebalancing"}

    # Ingest: no token, a wrong one, a basic-auth guess, a foreign Origin, text/plain.
    forged = event("dns-1", "down", "forged")
    for authorization in [None, "Bearer wrong-token-0123456789", f"Bearer {TOKEN}x",
                          basic_header("prometheus", "guess"), f"Basic {TOKEN}"]:
        status, _ = s.ingest(forged, authorization)
        assert status == 401, (authorization, status)
    status, _, _ = s.request("POST", "/ingest/events", forged,
                             {"Content-Type": "text/plain", "Origin": "https://evil.example"})
    assert status == 401
    assert s.ingest(forged, f"Bearer {TOKEN}", content_type="text/plain")[0] == 415
    # Plain HTTP on the TLS port gets no answer at all.
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn = http.client.HTTPConnection("127.0.0.1", s.worker.port, timeout=5)
        conn.request("POST", "/ingest/events", forged, {"Content-Type": "application/json"})
        assert conn.getresponse().status >= 400  # not reached: TLS answers garbage or closes

    # The token is the bearer credential; a basic-auth user may post too.
    assert s.ingest(event("dns-1", "down", "by-token"), f"Bearer {TOKEN}")[0] == 202
    assert s.ingest(event("dns-2", "down", "by-user"), s.basic)[0] == 202

    # Rotating the token file expires the old token (read again within a second).
    new_token = "rotated-token-abcdef0123456789"
    s.token_file.write_text(new_token)
    time.sleep(1.5)
    try:
        assert s.ingest(event("dns-1", "up", "expired"), f"Bearer {TOKEN}")[0] == 401
        assert s.ingest(event("dns-1", "up", "rotated"), f"Bearer {new_token}")[0] == 202
    finally:
        s.token_file.write_text(TOKEN)
        time.sleep(1.5)

    # So does rotating a password in the web config file; a broken edit keeps the last good one.
    original = s.web_file.read_text()
    s.web_file.write_text(original.split("basic_auth_users")[0]
                          + f"basic_auth_users: {{prometheus: '{bcrypt_hash('new password')}'}}\n")
    time.sleep(1.5)
    try:
        assert s.request("GET", "/metrics", headers={"Authorization": s.basic})[0] == 401
        new_basic = basic_header("prometheus", "new password")
        assert s.request("GET", "/metrics", headers={"Authorization": new_basic})[0] == 200
        s.web_file.write_text("basic_auth_users: [broken\n")
        time.sleep(1.5)
        assert s.request("GET", "/metrics", headers={"Authorization": new_basic})[0] == 200
    finally:
        s.web_file.write_text(original)
        time.sleep(1.5)
    assert s.request("GET", "/metrics", headers={"Authorization": s.basic})[0] == 200

    published = [e for e in s.events_on_topic() if e.get("id") not in before]
    assert sorted(e["id"] for e in published) == ["by-token", "by-user", "rotated"]

    # Credentials appear in no log, API answer or process title.
    log = s.worker.log_path.read_text(errors="replace")
    cmdline = Path(f"/proc/{s.worker.pid}/cmdline").read_bytes().decode(errors="replace")
    api = b"".join(s.request("GET", p, headers={"Authorization": s.basic})[2]
                   for p in ("/api/services", "/api/worker"))
    for secret in (PASSWORD, TOKEN, new_token, s.basic.split()[1]):
        assert secret not in log and secret not in cmdline and secret.encode() not in api
    assert "ingest events from 127.0.0.1: 1 events published" in log


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def watching_health(s: Secured) -> Iterator[dict[str, float]]:
    """Poll /healthz (and the worker's RSS) every 50 ms; yields the worst seen."""
    seen = {"latency": 0.0, "rss_kib": float(rss_kib(s.worker.pid)), "failures": 0.0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, _, _ = s.request("GET", "/healthz", timeout=5)
                if status != 200:
                    seen["failures"] += 1
            except OSError:
                seen["failures"] += 1
            seen["latency"] = max(seen["latency"], time.monotonic() - started)
            seen["rss_kib"] = max(seen["rss_kib"], rss_kib(s.worker.pid))
            stop.wait(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)


@pytest.mark.integration
def test_hostile_bodies_cost_little_and_never_block_healthz(secured: Secured) -> None:
    s = secured
    bearer = f"Bearer {TOKEN}"
    before = len(s.events_on_topic())
    baseline = rss_kib(s.worker.pid)
    array = b"[" + b"0," * 2_000_000 + b"0]"  # the 4 MB body: 21 s, 8.4 GB before
    nested = b"[" * 100_000 + b"]" * 100_000
    many = b"[" + b"{}," * (limits.MAX_BODY_BYTES // 3 - 2) + b"{}]"  # just under the size cap
    deep_events = b"\n".join([b'{"component":"dns-1","state":"up","ts":1,"x":' + b"[" * 40
                              + b"]" * 40 + b"}"] * 100)
    with watching_health(s) as seen:
        started = time.monotonic()
        status, raw = s.ingest(array, bearer)
        assert status == 413 and b"limit" in raw, raw
        # The same without Content-Length: cut off while it is read.
        conn = http.client.HTTPSConnection("127.0.0.1", s.worker.port, timeout=30, context=s.ctx)
        try:
            conn.putrequest("POST", "/ingest/events")
            for k, v in {"Content-Type": "application/json", "Authorization": bearer,
                         "Transfer-Encoding": "chunked"}.items():
                conn.putheader(k, v)
            conn.endheaders()
            with contextlib.suppress(OSError):
                for i in range(0, len(array), 1 << 16):
                    piece = array[i:i + (1 << 16)]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            assert conn.getresponse().status == 413
        finally:
            conn.close()
        for body, code in [(nested, 400), (many, 413), (deep_events, 400)]:
            status, raw = s.ingest(body, bearer)
            assert status == code, (status, raw[:200])
        elapsed = time.monotonic() - started
        time.sleep(0.3)
    growth_mib = (seen["rss_kib"] - baseline) / 1024
    print(f"\nhostile bodies refused in {elapsed:.2f} s; RSS growth {growth_mib:.1f} MiB; "
          f"/healthz worst {seen['latency'] * 1000:.0f} ms, failures {seen['failures']:.0f}")
    assert growth_mib < 50
    assert seen["latency"] < 1.0 and seen["failures"] == 0
    assert len(s.events_on_topic()) == before  # nothing of it was published


@pytest.mark.integration
def test_slow_clients_are_cut_off_and_connections_capped(secured: Secured) -> None:
    s = secured
    # Half-sent headers: closed after --web-header-timeout (3 s).
    sock = s.raw_socket()
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    sock.settimeout(15)
    try:
        data = sock.recv(4096)
    except (ConnectionError, ssl.SSLError):
        data = b""
    finally:
        sock.close()
    waited = time.monotonic() - started
    assert data == b"" and 2.5 < waited < 8, (data[:100], waited)

    # A half-sent body: 408 after --web-body-timeout (3 s), nothing published.
    sock = s.raw_socket()
    sock.sendall(b"POST /ingest/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"co")
    started = time.monotonic()
    sock.settimeout(15)
    answer = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
        while chunk := sock.recv(4096):
            answer += chunk
    sock.close()
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and 2.5 < waited < 8, (answer[:100], waited)

    # The connection cap (24): idle connections past it get 503 and are closed.
    idle = [s.raw_socket() for _ in range(24)]
    try:
        time.sleep(0.3)
        extra = s.raw_socket()
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        extra.settimeout(5)
        assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        extra.close()
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.5)
    assert s.request("GET", "/healthz")[0] == 200


@pytest.mark.integration
@pytest.mark.slow
def test_requests_forwarded_between_workers_keep_tls_and_credentials(
    kafka_broker: EmbeddedBroker, tmp_path: Path, tls: TLSFiles
) -> None:
    """/api/services/{name}/outages is answered by the worker that owns the service
    (Faust's table_route): with two workers half the calls are forwarded, over TLS
    (the peer verified against the shared certificate) with the caller's credentials."""
    from tests.fixtures_kafka import wide_catalog

    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config: {{cert_file: {tls.cert}, key_file: {tls.key}}}\n"
                   f"basic_auth_users: {{prometheus: '{bcrypt_hash(PASSWORD)}'}}\n")
    catalog = tmp_path / "services.yaml"
    catalog.write_text(wide_catalog(12))
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    workers = [WorkerProcess(kafka_broker, catalog, tmp_path, name=n,
                             extra=["--web-config-file", str(web)]) for n in ("a", "b")]
    try:
        for w in workers:
            w.scheme, w.ssl_context = "https", ctx
            w.start()
        deadline = time.monotonic() + 120
        owned: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            owned = {}
            for w in workers:
                w.auth_headers = {"Authorization": basic_header("prometheus", PASSWORD)}
                with contextlib.suppress(OSError):
                    status, api = w.get("/api/services")
                    if status == 200:
                        owned[w.name] = {s["service"] for s in orjson.loads(api)["services"]}
            if len(owned) == 2 and all(owned.values()) and len(owned["a"] | owned["b"]) == 12:
                break
            time.sleep(1)
        assert len(owned) == 2 and owned["a"] and owned["b"], owned
        a = workers[0]
        for name in sorted(owned["a"] | owned["b"]):
            status, body = a.get(f"/api/services/{name}/outages")
            assert status == 200, (name, status, body[:300])
            assert orjson.loads(body)["service"] == name
        a.auth_headers = {}
        remote = sorted(owned["b"])[0]
        assert a.get(f"/api/services/{remote}/outages")[0] == 401
        a.auth_headers = {"Authorization": basic_header("prometheus", "wrong")}
        assert a.get(f"/api/services/{remote}/outages")[0] == 401
    finally:
        for w in workers:
            w.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_client_certificates_are_required_and_their_names_checked(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path, tls: TLSFiles
) -> None:
    """client_auth_type RequireAndVerifyClientCert with client_allowed_sans: no
    certificate, no connection; a certificate of the CA with another name, 403."""
    web = tmp_path / "web.yml"
    web.write_text(f"""
tls_server_config:
  cert_file: {tls.cert}
  key_file: {tls.key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {tls.ca}
  client_allowed_sans: [scraper.test]
""")
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    # Client certificates are credentials (ingest could be on beyond loopback too).
    worker = worker_factory(kafka_broker, catalog, extra=["--web-config-file", str(web), "--ingest"])
    worker.scheme = "https"

    def ctx(cert: Path | None, key: Path | None) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(tls.ca))
        if cert is not None:
            c.load_cert_chain(cert, key)
        return c

    worker.ssl_context = ctx(tls.client_cert, tls.client_key)
    worker.wait_ready(timeout=90)
    assert worker.get("/metrics")[0] == 200
    worker.ssl_context = ctx(tls.cert, tls.key)  # signed by the CA, but not scraper.test
    assert worker.get("/metrics")[0] == 403
    worker.ssl_context = ctx(None, None)
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        worker.get("/metrics")


@pytest.mark.integration
def test_the_image_health_check_finds_healthz_over_tls(secured: Secured) -> None:
    """The Dockerfile's HEALTHCHECK (``python -m agents.cli.healthcheck``) reads the web
    config to know the scheme, and needs no password."""
    import os
    import subprocess
    import sys

    web = secured.web_file
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLAWATCH_")}
    env.update(SLAWATCH_WEB_PORT=str(secured.worker.port), SLAWATCH_WEB_CONFIG_FILE=str(web))
    check = [sys.executable, "-m", "agents.cli.healthcheck"]
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0
    env.pop("SLAWATCH_WEB_CONFIG_FILE")  # plain HTTP to a TLS port: unhealthy
    assert subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 1
