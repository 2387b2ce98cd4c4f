"""The arrows of docs/DESIGN.md hold: streams/ is pure, clients/ do not reach into the
worker, nothing of slawatch imports the tests. Checked on the source (imports anywhere
in a module, not only at its top)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: What the pure domain may not import: the I/O side and everything that is a clock
#: or talks to the network.
FORBIDDEN_IN_STREAMS = ("agents", "faust", "mode", "aiokafka", "kafka", "aiohttp",
                        "prometheus_client", "socket", "asyncio", "time", "subprocess",
                        "requests", "urllib")
#: Calls that read the wall clock.
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"),
               ("datetime", "today")}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("streams"), ids=lambda p: p.name)
def test_streams_imports_nothing_of_the_io_side(path: Path) -> None:
    bad = [m for m in _imports(path) if m.split(".")[0] in FORBIDDEN_IN_STREAMS]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _modules("streams"), ids=lambda p: p.name)
def test_streams_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else (
                owner.attr if isinstance(owner, ast.Attribute) else None)
            assert (name, node.func.attr) not in CLOCK_CALLS, (
                f"{path.relative_to(ROOT)}:{node.lineno} reads the clock: `now` is a parameter")


@pytest.mark.parametrize("path", _modules("agents/clients"), ids=lambda p: p.name)
def test_clients_do_not_import_the_worker(path: Path) -> None:
    bad = [m for m in _imports(path) if m.startswith("agents.worker")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", _modules("streams") + _modules("agents"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_production_imports_nothing_of_the_tests(path: Path) -> None:
    """Test-only code lives in tests/ (e.g. the crash points' hook,
    tests/support/crashing_worker.py); an installed slawatch has no tests package."""
    bad = [m for m in _imports(path) if m.split(".")[0] == "tests"]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_checks_see_the_modules() -> None:
    assert len(_modules("streams")) >= 10 and _modules("agents/clients")
