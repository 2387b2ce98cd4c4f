"""`python -m agents.cli.healthcheck`: the container's health check.

GET /healthz on the worker's port (``SLAWATCH_WEB_PORT``), over HTTPS when the web
config file (``SLAWATCH_WEB_CONFIG_FILE``) has ``tls_server_config`` (the certificate is
not checked: this is the container asking its own process over loopback); exit status
0 when it answers 200.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request

from agents.connection import env_value


def main() -> int:
    port = env_value("SLAWATCH_WEB_PORT", "6066")
    from agents.web.auth import WebConfigError, load_web_config

    try:
        tls = load_web_config(env_value("SLAWATCH_WEB_CONFIG_FILE")).tls is not None
    except WebConfigError as exc:
        print(f"slawatch health check: {exc}", file=sys.stderr)
        return 1
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/healthz"
    context = ssl._create_unverified_context() if tls else None  # loopback, ourselves
    try:
        with urllib.request.urlopen(url, timeout=4, context=context) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:
        print(f"slawatch health check: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
