"""`slawatch check`: the internal-vs-external table a service owner reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ITIL = """
components:
  mail-srv-01: {team: servers, kpi: 0.99}
  core-sw-1: {team: network, kpi: 0.9995}
  dns-1: {team: network, kpi: 0.999}
  dns-2: {team: network, kpi: 0.999}
services:
  dns:
    kind: internal
    customers: [it-operations]
    sla: {target: 0.999, period: 30d}
    requires: [{any: [dns-1, dns-2]}]
  email:
    kind: external
    customers: [all-staff, partners]
    sla: {target: 0.999, period: month}
    restore_time: 2h
    requires: [core-sw-1, mail-srv-01, {service: dns}]
"""


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "check", str(path)],
        capture_output=True, text=True, timeout=60,
    )


def test_itil_example_shows_a_kpi_gap_and_names_the_server(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(ITIL)
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    # One 99% server under a 99.9% SLA cannot carry it: 0.99 * 0.9995 * (1 - 0.001**2) = 0.98950401.
    assert "GAP" in lines["email"]
    assert "98.9504%" in lines["email"]
    assert "mail-srv-01" in lines["email"]
    assert "ok" in lines["dns"].split()
    assert "99.9999%" in lines["dns"]
    # External services come first: the promise to customers leads the table.
    names = [line.split()[0] for line in result.stdout.splitlines()[1:3]]
    assert names == ["email", "dns"]
    assert "1 with a KPI gap" in result.stdout


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        ("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 0.9, period: 1d},"
         " requires: [b]}\n", "service 's': field 'requires[0]': unknown component 'b'"),
        ("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 1.5, period: 1d},"
         " requires: [a]}\n", "service 's': field 'sla.target'"),
        ("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 0.9, period: 10x},"
         " requires: [a]}\n", "service 's': field 'sla.period'"),
        ("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 0.9, period: 1d},"
         " requires: [{service: t}]}\n  t: {kind: internal, sla: {target: 0.9, period: 1d},"
         " requires: [{service: s}]}\n", "cycle of services: s -> t -> s"),
        ("components: {a: {}}\nservices:\n  s: {kind: external, sla: {target: 0.9, period: 1d},"
         " requires: [{at_least: 2, of: [a]}]}\n", "field 'requires[0].at_least': 2 is larger"),
        ("components: [\n", "not valid YAML"),
    ],
    ids=["unknown-component", "target-out-of-range", "bad-duration", "cycle", "k-too-large", "bad-yaml"],
)
def test_invalid_catalog_exits_1_naming_file_service_field(
    tmp_path: Path, catalog: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(catalog)
    result = run_check(path)
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert expected in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_check(tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert "cannot read the file" in result.stderr


def test_redundant_components_are_not_named_as_pulling_down(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(ITIL)
    email = next(line for line in run_check(path).stdout.splitlines() if line.startswith("email"))
    assert "core-sw-1" in email
    assert "dns-1" not in email  # redundant pair: under 1% of the unavailability
