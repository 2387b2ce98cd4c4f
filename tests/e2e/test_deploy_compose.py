"""docker-compose.yml, the Dockerfile and scripts/install-system-deps.

`docker compose config` validates the stack with the Compose v2 client alone (no engine).
The client comes from scripts/install-system-deps; a missing one fails these tests unless
SLAWATCH_ALLOW_MISSING_TOOLS=1, which turns that into a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install-system-deps"


def missing(msg: str) -> None:
    msg += "; run scripts/install-system-deps, or set SLAWATCH_ALLOW_MISSING_TOOLS=1 to skip"
    if os.environ.get("SLAWATCH_ALLOW_MISSING_TOOLS") == "1":
        pytest.skip(msg)
    pytest.fail(msg)


def compose_cmd() -> list[str]:
    """`docker compose` (the CLI plugin), else a standalone Compose v2+ `docker-compose`."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cmd in candidates:
        res = subprocess.run(
            [*cmd, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        )
        if res.returncode == 0 and re.match(r"v?([2-9]|\d\d)\.", res.stdout.strip()):
            return cmd
    missing("no Docker Compose v2 client (`docker compose` or `docker-compose` v2+)")
    raise AssertionError("unreachable")


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*compose_cmd(), "-f", str(ROOT / "docker-compose.yml"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The stack as Compose resolves it (anchors merged, defaults filled in)."""
    res = compose("config", "--format", "json")
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def test_compose_config_is_valid() -> None:
    res = compose("config", "-q")
    assert res.returncode == 0, res.stdout + res.stderr


def test_kafka_single_node_kraft(stack: dict[str, Any]) -> None:
    kafka = stack["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["CLUSTER_ID"]
    assert kafka["healthcheck"]["test"]
    init = stack["services"]["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "component-events" in " ".join(init["command"])


def test_two_workers_one_group(stack: dict[str, Any]) -> None:
    services = stack["services"]
    workers = [services[f"slawatch-worker-{i}"] for i in (1, 2)]
    ports = set()
    for w in workers:
        assert w["command"] == ["slawatch", "worker"]
        assert w["build"]["context"] == str(ROOT)
        env = w["environment"]
        assert env["SLAWATCH_BROKER"] == "kafka://kafka:9092"
        assert env["SLAWATCH_CATALOG"] == "/app/config/services.yaml"
        assert env["SLAWATCH_WEB_HOST"] == "0.0.0.0"
        ports.add(env["SLAWATCH_WEB_PORT"])
        assert env["SLAWATCH_WEB_PORT"] in " ".join(w["healthcheck"]["test"])
        assert w["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
        assert any(v["target"] == "/app/config" for v in w["volumes"])
    assert len(ports) == 2, "the workers need distinct web ports"
    # same settings otherwise: one consumer group
    a, b = (dict(w["environment"]) for w in workers)
    a.pop("SLAWATCH_WEB_PORT")
    b.pop("SLAWATCH_WEB_PORT")
    assert a == b


def test_simulator(stack: dict[str, Any]) -> None:
    sim = stack["services"]["simulator"]
    assert sim["command"][:4] == ["slawatch", "simulate", "--broker", "kafka://kafka:9092"]
    assert sim["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_prometheus_scrapes_both_workers_with_the_rules(stack: dict[str, Any]) -> None:
    services = stack["services"]
    prom = services["prometheus"]
    targets = {v["target"]: v["source"] for v in prom["volumes"] if v["type"] == "bind"}
    assert Path(targets["/etc/prometheus/prometheus.yml"]) == ROOT / "deploy/prometheus/prometheus.yml"
    assert Path(targets["/etc/prometheus/rules"]) == ROOT / "deploy/prometheus/rules"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    assert sorted(config["rule_files"]) == [
        "rules/slawatch-alerts.yml",
        "rules/slawatch-slo.yml",
    ]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "slawatch"]
    scraped = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = {
        f"{name}:{services[name]['environment']['SLAWATCH_WEB_PORT']}"
        for name in ("slawatch-worker-1", "slawatch-worker-2")
    }
    assert scraped == expected
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # Prometheus must come up even when the workers are unhealthy: it is what alerts on them.
    for w in ("slawatch-worker-1", "slawatch-worker-2"):
        assert prom["depends_on"][w]["condition"] == "service_started"


def test_alertmanager_and_grafana(stack: dict[str, Any]) -> None:
    services = stack["services"]
    am = services["alertmanager"]
    assert any(Path(v["source"]) == ROOT / "deploy/alertmanager/alertmanager.yml" for v in am["volumes"])
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    sources = {Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    assert ROOT / "deploy/grafana/provisioning" in sources
    assert ROOT / "deploy/grafana/dashboards" in sources


def test_healthchecks_and_loopback_ports(stack: dict[str, Any]) -> None:
    for name, svc in stack["services"].items():
        if name in {"kafka-init", "simulator"}:
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert re.search(r"\bpip install \.(\s|$)", text)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert 'CMD ["slawatch", "worker"]' in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored
    # what the image copies must exist (and not be excluded from the build context)
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is missing"
                assert src not in ignored, f"Dockerfile copies {src}, but .dockerignore drops it"
    # the image's default catalog is the one the workers are told to use
    assert (ROOT / "config" / "services.yaml").is_file(), "config/services.yaml is missing"


def test_install_system_deps_script() -> None:
    assert os.access(INSTALL, os.X_OK)
    res = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    tools = ("promtool", "prometheus", "amtool", "chromium")
    if all(shutil.which(t) for t in tools) and compose_ok():
        # everything is there: a run must change nothing and say so
        res = subprocess.run(
            [str(INSTALL)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.strip() == "install-system-deps: nothing to install"


def compose_ok() -> bool:
    if not shutil.which("docker"):
        return False
    res = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    return res.returncode == 0
