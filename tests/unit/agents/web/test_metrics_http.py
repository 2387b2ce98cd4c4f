"""``GET /metrics`` over real HTTP (aiohttp's server on a loopback port, in this
process): the body a client reads, gzip-decoded when it asked for gzip, is the
exposition text byte for byte, for generated estates and clients' headers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agents.exposition.collector import make_registry, render
from agents.settings import WorkerSettings
from agents.web.metrics import accepts_gzip, metrics_response
from streams.states import State
from tests.fake_tables import FakeRuntime, Table
from tests.unit.agents.exposition.test_collector_cache import T0, Harness, catalog

#: Accept-Encoding headers of real clients, and what they accept.
HEADERS = [
    (None, False),
    ("", False),
    ("gzip", True),  # Prometheus
    ("gzip, deflate, br", True),
    ("identity", False),
    ("deflate", False),
    ("GZIP;q=0.5", True),
    ("gzip;q=0", False),
    ("*", True),
    ("*;q=0", False),
    ("gzip;q=0, *", False),
    ("identity, *;q=0.1", True),
    ("x-gzip", True),
    ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
    ("gzip;q=nonsense", False),
]


@pytest.mark.parametrize(("header", "expected"), HEADERS)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def estate(seed: int) -> Harness:
    rng = random.Random(seed)
    h = Harness(rng.randrange(1, 40))
    comps = list(h.rt.catalog.components)
    for _ in range(rng.randrange(0, 120)):
        state = rng.choice([State.UP, State.UP, State.DOWN, State.MAINTENANCE])
        h.apply(rng.choice(comps), state, T0 - rng.uniform(0, 3 * 86400),
                flush=rng.random() < 0.8)
    return h


@contextlib.asynccontextmanager
async def _served(registry: Any) -> AsyncIterator[int]:
    """``/metrics`` of ``registry`` on a real aiohttp server on loopback; its port."""
    app = web.Application()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await metrics_response(request, registry)

    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def _fetch(registry: Any, header: str | None) -> tuple[bytes, Any, bytes]:
    async with _served(registry) as port:
        headers = {} if header is None else {"Accept-Encoding": header}
        async with ClientSession(auto_decompress=False, skip_auto_headers=["Accept-Encoding"]) \
                as session, session.get(f"http://127.0.0.1:{port}/metrics",
                                        headers=headers) as resp:
            assert resp.status == 200
            raw = await resp.read()
            expected, _ = render(registry)  # the same clock: the same text
            return raw, resp.headers, expected


@pytest.mark.parametrize("seed", range(8))
def test_body_is_the_text_in_every_encoding(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.exposition import collector as mod

    rng = random.Random(seed)
    monkeypatch.setattr(mod, "JOIN_KEYS", rng.choice([1, 3, 4096]))  # many pieces or few
    h = estate(seed)
    registry = make_registry(h.rt)
    registry.slawatch_collector.clock = lambda: h.now  # type: ignore[attr-defined]
    header, gz = rng.choice(HEADERS)
    raw, headers, expected = asyncio.run(_fetch(registry, header))
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert "Accept-Encoding" in headers.get("Vary", "")
    if gz:
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(raw) == expected
        assert len(raw) < len(expected)
    else:
        assert "Content-Encoding" not in headers
        assert raw == expected
    assert expected.count(b"\n# TYPE ") >= 20


def test_a_text_of_many_pieces_is_one_gzip_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of series in pieces of one key each: one gzip stream (one member, as
    Go's and zlib's gzip readers read it to the end), and the same bytes."""
    from agents.exposition import collector as mod

    monkeypatch.setattr(mod, "JOIN_KEYS", 1)
    rt = FakeRuntime(WorkerSettings(), catalog(300))
    rt.bind_tables(Table(), Table())
    registry = make_registry(rt)
    registry.slawatch_collector.clock = lambda: T0  # type: ignore[attr-defined]
    raw, headers, expected = asyncio.run(_fetch(registry, "gzip"))
    assert headers["Content-Encoding"] == "gzip"
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert d.decompress(raw) + d.flush() == expected
    assert d.eof and not d.unused_data


@pytest.mark.parametrize("header", ["gzip", None])
def test_a_client_that_goes_away_leaves_no_scrape_counted_as_writing(header: str | None) -> None:
    """The worker holds its prepare and refresh while responses are being written
    (``SlawatchCollector.writing``): a client that reads the headers and goes away
    must not leave it held."""
    from agents.exposition import collector as mod

    rt = FakeRuntime(WorkerSettings(), catalog(2000))
    rt.bind_tables(Table(), Table())
    registry = make_registry(rt)
    collector = registry.slawatch_collector  # type: ignore[attr-defined]
    collector.clock = lambda: T0
    seen: list[int] = []

    async def run() -> None:
        async with _served(registry) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            enc = f"Accept-Encoding: {header}\r\n" if header else ""
            writer.write(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{enc}\r\n".encode())
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            seen.append(collector.writing)
            writer.close()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if not collector.writing:
                    break
            seen.append(collector.writing)

    old = mod.JOIN_KEYS
    mod.JOIN_KEYS = 1  # thousands of pieces: the response is still being written
    try:
        asyncio.run(run())
    finally:
        mod.JOIN_KEYS = old
    assert seen[0] in (0, 1)  # 1 while still writing (not certain: socket buffers)
    assert seen[-1] == 0
