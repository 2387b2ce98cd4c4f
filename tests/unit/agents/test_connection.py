"""Kafka connection settings, shared by the worker and the publisher: secrets from
files, warnings, and the TLS and SASL objects handed to aiokafka (Faust) and
kafka-python. No broker here that requires SASL or TLS could be run (README,
"Security"), so these check what slawatch builds, not a handshake."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agents import settings as worker_settings
from agents.connection import KafkaConnection, add_security_arguments
from tests.support.tls import make_tls


def publisher_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default="kafka://127.0.0.1:9092")
    add_security_arguments(parser)
    return parser.parse_args(list(argv))


def test_passwords_come_from_files_and_never_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLAWATCH_SASL_PASSWORD", "SLAWATCH_SASL_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    secret = tmp_path / "sasl.pw"
    secret.write_text("s3cret-from-file\n")
    conn = KafkaConnection.from_args(publisher_args(
        "--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
        "--sasl-username", "slawatch", "--sasl-password-file", str(secret)))
    assert conn.sasl_password == "s3cret-from-file" and conn.validate() == []
    assert "s3cret" not in repr(conn) and "s3cret" not in conn.describe()
    cfg = conn.client_config()
    assert (cfg["sasl_mechanism"], cfg["sasl_plain_password"]) == ("SCRAM-SHA-512", "s3cret-from-file")
    creds = conn.faust_credentials()
    assert (creds.mechanism.value, creds.username) == ("SCRAM-SHA-512", "slawatch")
    assert creds.ssl_context is not None

    monkeypatch.setenv("SLAWATCH_SASL_PASSWORD_FILE", str(secret))
    parser = argparse.ArgumentParser()
    worker_settings.add_arguments(parser)
    ws = worker_settings.from_args(parser.parse_args(
        ["--security-protocol", "SASL_SSL", "--sasl-username", "slawatch"]))
    assert ws.kafka.sasl_password == "s3cret-from-file" and ws.validate() == []
    assert "s3cret" not in repr(ws) and "s3cret" not in ws.describe()

    monkeypatch.setenv("SLAWATCH_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    ws = worker_settings.from_args(parser.parse_args(
        ["--security-protocol", "SASL_SSL", "--sasl-username", "slawatch"]))
    assert any("SASL password file" in p and "missing" in p for p in ws.validate())


def test_plain_over_plaintext_and_a_password_flag_are_warned_about() -> None:
    conn = KafkaConnection.from_args(publisher_args(
        "--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "u", "--sasl-password", "p"))
    warnings = conn.warnings()
    assert any("clear text" in w for w in warnings) and any("`ps`" in w for w in warnings)
    scram = KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                            sasl_username="u", sasl_password="p")
    assert scram.warnings() == []


def test_mutual_tls_with_an_encrypted_key(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    key = serialization.load_pem_private_key(tls.client_key.read_bytes(), None)
    encrypted = tmp_path / "client-encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass")))
    (tmp_path / "key.pw").write_text("key-pass\n")
    conn = KafkaConnection.from_args(publisher_args(
        "--security-protocol", "SSL", "--ssl-cafile", str(tls.ca),
        "--ssl-certfile", str(tls.client_cert), "--ssl-keyfile", str(encrypted),
        "--ssl-key-password-file", str(tmp_path / "key.pw")))
    assert conn.validate() == []
    assert conn.ssl_context() is not None  # the key was decrypted with the password
    assert conn.client_config()["ssl_password"] == "key-pass"
    wrong = KafkaConnection(security_protocol="SSL", ssl_cafile=str(tls.ca),
                            ssl_certfile=str(tls.client_cert), ssl_keyfile=str(encrypted),
                            ssl_key_password="nope")
    with pytest.raises(Exception):  # noqa: B017 - ssl.SSLError, its subclass varies
        wrong.ssl_context()
