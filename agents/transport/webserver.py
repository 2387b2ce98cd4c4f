"""Faust's aiohttp web driver with a connection cap, a TLS handshake timeout and no
version in the ``Server`` header.

Why a subclass: Faust builds aiohttp's ``TCPSite`` itself (``Web._new_transport_tcp``)
with only the bind address, port and TLS context, so neither a cap on connections nor a
handshake timeout can be passed in; everything else (middlewares, timeouts of aiohttp's
request handler) goes through the public ``web_application_options``. The site here
does what ``TCPSite.start`` does, with a protocol factory that answers 503 and closes
once ``max_connections`` are open, and ``ssl_handshake_timeout``.

aiohttp has no header-read timeout of its own, but its keep-alive timer starts when the
connection opens and after every response, is not pushed back by bytes of a request
still being received, and closes the connection if no whole request arrived by then
(``RequestHandler._process_keepalive``, aiohttp 3.9-3.14). So ``keepalive_timeout`` is
the header timeout: ``tests/test_web_security.py`` checks that half-sent headers are cut
off, so a change of that behaviour in an aiohttp upgrade is caught.

Two more places aiohttp answers or writes for itself, before any middleware: the 400
it sends for a request it cannot parse carries its default ``Server: Python/3.x
aiohttp/3.y`` (``web_response.SERVER_SOFTWARE``, replaced here), and it logs each such
request at ERROR with a traceback (``aiohttp.server``), which anyone who can connect
could use to flood the log: ``_ErrorLogLimit`` lets one through per
``ERROR_LOG_INTERVAL`` and says how many it held back.

Checked against the faust-streaming and aiohttp ranges of ``versions.TESTED``; outside
them the worker refuses to start (``SLAWATCH_ALLOW_UNTESTED_DEPS=1`` overrides).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web, web_response
from faust.web.drivers import DRIVERS
from faust.web.drivers import aiohttp as faust_aiohttp

log = logging.getLogger("slawatch.web")

#: The ``Server`` header of every response: no product version to fingerprint.
SERVER_HEADER = "slawatch"
#: Name of this driver in Faust's ``web`` setting (``slawatch://``).
DRIVER = "slawatch"
#: Seconds between two log records of requests aiohttp could not parse.
ERROR_LOG_INTERVAL = 10.0

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER_HEADER.encode()
         + b"\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n\r\n"
         b"too many connections; try again")


class _Refuse(asyncio.Protocol):
    """A connection over the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


class GuardedSite(web.TCPSite):
    """``TCPSite`` with a connection cap and a TLS handshake timeout."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int, *,
                 ssl_context: Any, max_connections: int, handshake_timeout: float) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.refused = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        cap = self.max_connections

        def protocol() -> asyncio.Protocol:
            # Connections still in their TLS handshake are not counted: the handshake
            # timeout bounds them.
            if len(server.connections) >= cap:
                self.refused += 1
                return _Refuse()
            return server()

        kwargs: dict[str, Any] = {}
        if self._ssl_context is not None:
            kwargs["ssl_handshake_timeout"] = self.handshake_timeout
        self._server = await loop.create_server(
            protocol, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port, **kwargs)
        sockets = getattr(self._server, "sockets", None)
        if sockets and self._port == 0:
            self._bound_port = sockets[0].getsockname()[1]


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


class SlawatchWeb(faust_aiohttp.Web):
    """Faust's aiohttp driver, serving through ``GuardedSite``.

    The limits are read from ``app.slawatch_web_limits`` (set by ``build_app``).
    """

    site: GuardedSite | None = None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.limits: dict[str, float] = dict(getattr(app, "slawatch_web_limits", {}))
        super().__init__(app, **kwargs)
        self.web_app.on_response_prepare.append(_server_header)

    def _new_transport_tcp(self) -> web.BaseSite:
        self.site = GuardedSite(
            self._runner, self.app.conf.web_bind, self.app.conf.web_port,
            ssl_context=self.app.conf.web_ssl_context,
            max_connections=int(self.limits.get("max_connections", 256)),
            handshake_timeout=float(self.limits.get("handshake_timeout", 10.0)),
        )
        return self.site


class _ErrorLogLimit(logging.Filter):
    """At most one "Error handling request" record of ``aiohttp.server`` per interval."""

    def __init__(self) -> None:
        super().__init__()
        self.last = 0.0
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Error handling request"):
            return True
        now = time.monotonic()
        if now - self.last < ERROR_LOG_INTERVAL:
            self.held += 1
            return False
        if self.held:
            record.msg = f"{record.msg} (and {self.held} more since the last one logged)"
        self.last, self.held = now, 0
        return True


def register() -> str:
    """Make ``slawatch://`` name this driver in Faust's ``web`` setting; returns the URL."""
    from agents.transport import versions

    versions.require("faust-streaming", __name__)
    versions.require("aiohttp", __name__)
    DRIVERS.aliases.setdefault(DRIVER, f"{__name__}:SlawatchWeb")
    web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ErrorLogLimit) for f in server_log.filters):
        server_log.addFilter(_ErrorLogLimit())
    return f"{DRIVER}://"
