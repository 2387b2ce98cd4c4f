"""The web config file, the credentials checks, the limits on bytes and the settings
that refuse ingest beyond loopback without credentials (CONTRACT §8). No process: the
attacks on a real worker are in tests/integration/test_web_security.py."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from agents.web import limits
from agents.web.auth import Authenticator, WebConfigError, load_web_config, read_token_file
from tests.support.tls import TLSFiles, bcrypt_hash, make_tls

PASSWORD = "correct horse battery staple"
TOKEN = "ingest-token-0123456789abcdef"


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- the web config file ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize(("text", "needle"), [
    ("tls_server_config: {cert_file: CERT}\n", "tls_server_config.key_file: missing"),
    ("tls_server_config: {cert_file: CERT, key_file: /nope.key}\n", "key_file: /nope.key is not"),
    ("tls_server_config: {cert_file: CERT, key_file: KEY, client_auth_type: RequireAnyClientCert}\n",
     "client_auth_type: 'RequireAnyClientCert'"),
    ("tls_server_config: {cert_file: CERT, key_file: KEY, "
     "client_auth_type: RequireAndVerifyClientCert}\n", "client_ca_file: needed"),
    ("tls_server_config: {cert_file: CERT, key_file: KEY, min_version: TLS9}\n", "min_version"),
    ("tls_server_config: {cert_file: CERT, key_file: KEY, cipher_suites: [X]}\n", "cipher_suites"),
    ("tls_server_config: {cert_file: KEY, key_file: CERT}\n", "cert_file"),
    ("basic_auth_users: {prom: plaintext-password}\n", "basic_auth_users.prom: not a bcrypt hash"),
    ("basic_auth_users: [prom]\n", "basic_auth_users: expected dict"),
    ("basic_auth_user: {prom: x}\n", "unknown field 'basic_auth_user'"),
    ("http_server_config: {headers: {Server: x}}\n", "http_server_config.headers: 'Server'"),
    ("rate_limit: {interval: 1s}\n", "rate_limit"),
    ("tls_server_config: [\n", "not valid YAML"),
])
def test_a_bad_web_config_is_refused_naming_the_file_and_field(
    tmp_path: Path, tls: TLSFiles, text: str, needle: str
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text.replace("CERT", str(tls.cert)).replace("KEY", str(tls.key)))
    with pytest.raises(WebConfigError) as err:
        load_web_config(path)
    message = str(err.value)
    assert str(path) in message and needle in message, message
    assert "plaintext-password" not in message  # a secret is never echoed


def test_the_exporter_toolkit_example_loads(tmp_path: Path, tls: TLSFiles) -> None:
    path = tmp_path / "web.yml"
    hashed = bcrypt_hash(PASSWORD).replace("$2b$", "$2y$")  # htpasswd writes $2y$
    path.write_text(f"""
tls_server_config:
  cert_file: {tls.cert}
  key_file: {tls.key}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {tls.ca}
  min_version: TLS12
http_server_config:
  http2: true
  headers: {{Strict-Transport-Security: max-age=3600}}
basic_auth_users:
  prometheus: {hashed}
""")
    config = load_web_config(path)
    assert config.tls is not None and config.requires_credentials
    assert config.server_ssl_context() is not None
    assert "prometheus" not in repr(config) or hashed not in repr(config)


def test_basic_auth_and_token_checks(tmp_path: Path) -> None:
    import asyncio

    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{prom: '{bcrypt_hash(PASSWORD)}'}}\n")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    auth = Authenticator(load_web_config(web), str(token))

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def check() -> list[bool | None]:
        return [await auth.basic_ok(h) for h in (
            basic("prom", PASSWORD), basic("prom", PASSWORD), basic("prom", "wrong"),
            basic("nobody", PASSWORD), "Basic !!!", f"Bearer {TOKEN}", None)]

    assert asyncio.run(check()) == [True, True, False, False, False, False, False]
    assert auth.token_ok(f"Bearer {TOKEN}") and not auth.token_ok("Bearer wrong")
    assert not auth.token_ok(basic("prom", PASSWORD)) and not auth.token_ok(None)
    with pytest.raises(WebConfigError, match="at least 16"):
        token.write_text("short")
        read_token_file(token)
    auth.close()


def test_ingest_on_a_public_address_needs_credentials(tmp_path: Path, tls: TLSFiles) -> None:
    import argparse

    from agents import settings

    token = tmp_path / "token"
    token.write_text(TOKEN)

    def problems(*argv: str) -> list[str]:
        parser = argparse.ArgumentParser()
        settings.add_arguments(parser)
        return settings.from_args(parser.parse_args(list(argv))).validate()

    refused = problems("--web-host", "0.0.0.0", "--ingest")
    assert refused and "needs credentials" in refused[0]
    assert problems("--web-host", "127.0.0.1", "--ingest") == []
    assert problems("--web-host", "0.0.0.0", "--ingest", "--ingest-token-file", str(token)) == []
    assert problems("--web-host", "0.0.0.0") == []  # ingest off
    tls_only = tmp_path / "tls-only.yml"
    tls_only.write_text(f"tls_server_config: {{cert_file: {tls.cert}, key_file: {tls.key}}}\n")
    assert problems("--web-host", "0.0.0.0", "--ingest", "--web-config-file", str(tls_only))
    mtls = tmp_path / "mtls.yml"
    mtls.write_text(f"tls_server_config: {{cert_file: {tls.cert}, key_file: {tls.key}, "
                    f"client_auth_type: RequireAndVerifyClientCert, client_ca_file: {tls.ca}}}\n")
    assert problems("--web-host", "0.0.0.0", "--ingest", "--web-config-file", str(mtls)) == []
    assert "--web-config-file" in problems("--web-config-file", str(tmp_path / "missing.yml"))[0]


# -- the limits, on bytes ---------------------------------------------------------------------


def test_structure_is_measured_before_parsing() -> None:
    started = time.perf_counter()
    for body, status in [
        (b"[" + b"0," * 2_000_000 + b"0]", 413),  # the 4 MB array
        (b"[" * 100_000 + b"]" * 100_000, 400),  # 100k-deep nesting
        (b'{"a":' * 20 + b"1" + b"}" * 20, 400),
        (b"[" + b"{}," * (limits.MAX_ITEMS + 1) + b"{}]", 413),
    ]:
        with pytest.raises(limits.LimitError) as err:
            limits.check_structure(body)
        assert err.value.status == status, err.value.reason
    assert time.perf_counter() - started < 1.0
    # Brackets and commas inside strings do not count.
    assert limits.check_structure(b'[{"x": "[[[[,,,,{{{{"}, {"y": "\\"]"}]') == 2
    assert limits.check_structure(b'{"a": 1}\n{"b": 2}\n', lines=True) == 2


def test_the_shipped_example_web_config_loads(tmp_path: Path, tls: TLSFiles) -> None:
    """deploy/web-config.example.yml with its paths pointed at real files."""
    import asyncio

    ROOT = Path(__file__).resolve().parents[4]

    text = (ROOT / "deploy" / "web-config.example.yml").read_text()
    text = text.replace("/etc/slawatch/tls.crt", str(tls.cert)).replace("/etc/slawatch/tls.key", str(tls.key))
    path = tmp_path / "web.yml"
    path.write_text(text)
    config = load_web_config(path)
    assert config.tls is not None and set(config.basic_auth_users) == {"prometheus"}
    auth = Authenticator(config)
    assert asyncio.run(auth.basic_ok(basic_header("prometheus", "change-me")))
    auth.close()


