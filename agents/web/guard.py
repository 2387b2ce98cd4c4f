"""The middleware in front of every view: credentials, client certificate names, headers.

Which endpoint needs what:

* ``GET /healthz`` and ``GET /readyz`` answer without credentials (over TLS when it is
  on): kubelet and load-balancer probes cannot carry a password, and both answer only
  booleans. Everything else needs credentials once ``basic_auth_users`` is set.
* ``POST /ingest/*`` (only with ``--ingest``) takes the bearer token of
  ``--ingest-token-file`` or a basic-auth user: an Alertmanager webhook sends one
  ``Authorization`` header, a bearer token. With neither configured it is open, which
  the settings allow on a loopback address only.
* ``client_allowed_sans``: a client certificate must name one of them (403).

Every response carries ``X-Content-Type-Options: nosniff`` and the web config's
``http_server_config.headers``. A refused request gets 401 with
``WWW-Authenticate: Basic`` (or ``Bearer`` for ingest with a token), and its
credentials are never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agents.web.auth import Authenticator, peer_sans

#: Paths served without credentials (GET/HEAD only).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
INGEST_PREFIX = "/ingest/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_guard(auth: Authenticator, *, on_refused: Callable[[web.Request, int], None] | None = None,
               ) -> Any:
    """An aiohttp middleware that enforces ``auth`` on every request."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        config = auth.config
        refused = await _refusal(request, auth)
        if refused is not None:
            if on_refused is not None:
                on_refused(request, refused.status)
            response: web.StreamResponse = refused
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        for name, value in config.headers.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return guard


async def _refusal(request: web.Request, auth: Authenticator) -> web.Response | None:
    config = auth.config
    tls = config.tls
    if tls is not None and tls.client_allowed_sans:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        if not peer_sans(peercert) & set(tls.client_allowed_sans):
            return web.json_response({"error": "client certificate not allowed"}, status=403)
    path = request.path
    if path in OPEN_PATHS and request.method in ("GET", "HEAD"):
        return None
    header = request.headers.get("Authorization")
    ingest = path.startswith(INGEST_PREFIX)
    if ingest and auth.has_token and auth.token_ok(header):
        return None
    if config.basic_auth_users:
        ok = await auth.basic_ok(header)
        if ok:
            return None
        if ok is None:
            return web.json_response({"error": "too many authentication checks waiting"},
                                     status=503, headers={"Retry-After": "1"})
        return _unauthorized(bearer=ingest and auth.has_token)
    if ingest and auth.has_token:
        return _unauthorized(bearer=True)
    return None


def _unauthorized(*, bearer: bool) -> web.Response:
    challenge = 'Bearer realm="slawatch ingest"' if bearer else 'Basic realm="slawatch"'
    return web.json_response({"error": "unauthorized: valid credentials are required"},
                             status=401, headers={"WWW-Authenticate": challenge})
