"""The aiohttp and Faust internals agents/transport/webserver.py relies on are there
(the behaviour itself is tested against a real worker in
tests/integration/test_web_security.py: half-sent headers cut off, the cap)."""

from __future__ import annotations

import inspect

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from faust.web.drivers import aiohttp as faust_aiohttp

from agents.transport import versions, webserver


def test_the_internals_used_exist() -> None:
    assert callable(faust_aiohttp.Web._new_transport_tcp)
    site_init = inspect.getsource(web.TCPSite.__init__) + inspect.getsource(web.BaseSite.__init__)
    for name in ("_host", "_port", "_ssl_context", "_backlog", "_reuse_address", "_reuse_port",
                 "_bound_port"):
        assert f"self.{name}" in site_init, name
    # The keep-alive timer closes a connection still waiting for its request's headers.
    assert "self._waiter" in inspect.getsource(RequestHandler._process_keepalive)
    assert versions.in_tested_range("aiohttp", versions.installed("aiohttp") or "0")
    from aiohttp import web_response

    assert "headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)" in inspect.getsource(
        web_response.StreamResponse._prepare_headers)


def test_the_driver_is_registered_under_its_name() -> None:
    from faust.web.drivers import by_url

    assert webserver.register() == "slawatch://"
    assert by_url("slawatch://") is webserver.SlawatchWeb
