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

Checked against the faust-streaming and aiohttp ranges of ``versions.TESTED``; outside
them the worker refuses to start (``SLAWATCH_ALLOW_UNTESTED_DEPS=1`` overrides).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from faust.web.drivers import DRIVERS
from faust.web.drivers import aiohttp as faust_aiohttp

log = logging.getLogger("slawatch.web")

#: The ``Server`` header of every response: no product version to fingerprint.
SERVER_HEADER = "slawatch"
#: Name of this driver in Faust's ``web`` setting (``slawatch://``).
DRIVER = "slawatch"

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


def register() -> str:
    """Make ``slawatch://`` name this driver in Faust's ``web`` setting; returns the URL."""
    from agents.transport import versions

    versions.require("faust-streaming", __name__)
    versions.require("aiohttp", __name__)
    DRIVERS.aliases.setdefault(DRIVER, f"{__name__}:SlawatchWeb")
    return f"{DRIVER}://"
