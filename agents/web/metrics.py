"""``GET /metrics``: the exposition text written a piece at a time, gzip-compressed when
the client asks for it (Prometheus does: ``Accept-Encoding: gzip``).

Why gzip, and how: at 100k components / 10k services the text is ~123 MB per scrape.
Uncompressed that is ~1 s on a 1 Gbit/s link before Prometheus has read it, and
65 Mbit/s for ever at a 15 s interval; gzip level 1 makes it ~8 MB (15x). zlib takes
~0.25 s of CPU for it at level 1 (0.75 s at level 6, its default and aiohttp's), ISA-L
(``isal``) 0.05 s for the same size: on a loaded machine zlib's quarter second made a
scrape slower than sending the text as it is (``bench/scrape.py --worker``). The
compression runs in a thread of its own (ISA-L lets go of the GIL while it works, as
zlib does), overlapping with the event loop encoding the next piece.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from isal import isal_zlib
from prometheus_client import CollectorRegistry

from agents.exposition.collector import render_chunks

#: ISA-L level of a gzip-encoded scrape (0-3; 1: as small as zlib's level 1).
GZIP_LEVEL = 1
#: The thread that compresses: one, so one scrape's pieces stay in order and
#: concurrent scrapes cannot take more than a core between them.
_GZIP_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slawatch-gzip")


def accepts_gzip(header: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (RFC 9110 §12.5.3:
    ``gzip`` or ``*`` with a q-value above 0; an explicit ``gzip`` wins over ``*``)."""
    if not header:
        return False
    star: bool | None = None
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        for p in params.split(";"):
            key, _, value = p.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name in ("gzip", "x-gzip"):
            return q > 0
        if name == "*":
            star = q > 0
    return bool(star)


async def metrics_response(request: Any, registry: CollectorRegistry) -> Any:
    """The streamed response to ``GET /metrics`` on ``request`` (aiohttp)."""
    from aiohttp.web import StreamResponse

    # Every number taken at one instant (render_chunks), the text encoded and written
    # a piece at a time: a large catalog's text is ~100 MB, and one body was held
    # thrice over.
    chunks, content_type = render_chunks(registry)
    gzip = accepts_gzip(request.headers.get("Accept-Encoding"))
    # aiohttp refuses a content_type with parameters (Prometheus's has version and
    # charset), so the header is set as is.
    headers = {"Content-Type": content_type, "Vary": "Accept-Encoding"}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    response = StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    collector = getattr(registry, "slawatch_collector", None)
    if collector is not None:
        collector.writing += 1
        collector.rt.scrapes_writing += 1
    try:
        await _write(request, response, chunks, gzip)
    finally:
        if collector is not None:
            collector.writing -= 1
            collector.rt.scrapes_writing -= 1
    return response


async def _write(request: Any, response: Any, chunks: Iterator[bytes], gzip: bool) -> None:
    await response.prepare(request)
    if not gzip:
        for chunk in chunks:
            await response.write(chunk)
    else:
        loop = asyncio.get_running_loop()
        gz = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED,
                                   16 + isal_zlib.MAX_WBITS)  # gzip framing
        pending: asyncio.Future[bytes] | None = None
        # Piece k is encoded (the loop reading ``chunks``) while piece k-1 compresses.
        for chunk in chunks:
            if pending is not None:
                out = await pending
                if out:
                    await response.write(out)
            pending = loop.run_in_executor(_GZIP_POOL, gz.compress, chunk)
        if pending is not None:
            out = await pending
            if out:
                await response.write(out)
        await response.write(await loop.run_in_executor(_GZIP_POOL, gz.flush))
    await response.write_eof()
