"""The worker's HTTP side: it binds only the configured address, and the ingest
endpoints refuse oversize (413) and malformed (400) bodies with a reason.

Binding: the worker is started with ``--web-host 127.0.0.1``; the listening socket in
/proc/net/tcp must be 127.0.0.1 (not 0.0.0.0 or ::), a connection to another loopback
address (127.0.0.2: the whole 127/8 reaches lo on Linux) or to the host's own non-loopback
address (when it has one) must be refused.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.clients.broker import EmbeddedBroker
from tests.fixtures_kafka import EXAMPLE_CATALOG, counted
from tests.reliability_helpers import can_connect, listening_addresses, post, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT = 4 * 1024 * 1024


def _other_local_addresses() -> list[str]:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    addrs = [a for a in out.split() if "." in a and not a.startswith("127.")]
    with contextlib.suppress(OSError):
        addrs.append(socket.gethostbyname(socket.gethostname()))
    return sorted({a for a in addrs if not a.startswith("127.")})


def test_web_server_binds_only_the_configured_address_and_ingest_refuses_bad_bodies(
    kafka_broker: EmbeddedBroker, worker_factory: Any, tmp_path: Path
) -> None:
    catalog = tmp_path / "services.yaml"
    catalog.write_text(EXAMPLE_CATALOG)
    worker = worker_factory(kafka_broker, catalog)
    worker.wait_ready(timeout=40)

    # -- binding ------------------------------------------------------------------------
    assert listening_addresses(worker.port) == ["127.0.0.1"]
    assert can_connect("127.0.0.1", worker.port)
    assert not can_connect("127.0.0.2", worker.port)
    others = _other_local_addresses()
    for addr in others:
        assert not can_connect(addr, worker.port), f"reachable on {addr}"
    print(f"\nlistening on {listening_addresses(worker.port)}; refused on 127.0.0.2 "
          f"and {others or 'no other local address'}")

    # -- ingest endpoints -----------------------------------------------------------------
    url = worker.url
    status, _ = post(url + "/ingest/events", b"")
    if status in (404, 405):
        pytest.skip("POST /ingest/events is not served by the worker")

    def refused(path: str, body: bytes, code: int, *needles: str) -> None:
        status, raw = post(url + path, body)
        assert status == code, (path, status, raw[:300])
        reason = orjson.loads(raw)["error"]
        for needle in needles:
            assert needle in reason, (path, reason)

    now = time.time()
    event = orjson.dumps({"component": "dns-1", "state": "down", "ts": now - 60})
    big = b"\n".join([event] * (LIMIT // len(event) + 2))
    assert len(big) > LIMIT
    for path in ("/ingest/events", "/ingest/alertmanager"):
        refused(path, big, 413, "limit")
        refused(path, b"{not json", 400)
        refused(path, b"\xff\xfe\x00", 400)
        refused(path, b"[" * 100_000 + b"]" * 100_000, 400)
    refused("/ingest/events", b"", 400, "empty")
    refused("/ingest/events", b'[{"component": "dns-1", "state": "up"}]', 400, "missing field ts")
    refused("/ingest/events", event + b"\n" + b'{"component": "dns 1", "state": "up", "ts": 1}',
            400, "line 2")
    refused("/ingest/events", b'{"component": "dns-1", "state": "down", "ts": NaN}', 400)
    refused("/ingest/alertmanager", b'{"alerts": 5}', 400, "alerts")
    refused("/ingest/alertmanager", b"[]", 400)
    refused("/ingest/alertmanager",
            orjson.dumps({"alerts": [{"status": "firing", "labels": {"instance": "dns-1"},
                                      "startsAt": "yesterday"}]}), 400, "startsAt")

    # A chunked upload (no Content-Length) larger than the limit is cut off too.
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=30)
    try:
        conn.putrequest("POST", "/ingest/events")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(6):
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close the connection once the limit is passed
        resp = conn.getresponse()
        assert resp.status == 413, resp.status
    finally:
        conn.close()

    # Nothing refused was published; a valid body is, and the worker counts it.
    status, raw = post(url + "/ingest/events", event)
    assert status == 202, raw
    wait_for(lambda: counted(worker.scrape()) == 1, 30, "the ingested event to be counted")
    assert worker.alive()
