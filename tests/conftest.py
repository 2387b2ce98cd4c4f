"""Directory conventions of the suite (the fixtures are in ``tests/support/plugin.py``).

- ``tests/unit``: no process is started (``make test-fast`` runs only these).
- ``tests/integration``: real broker and worker processes; marked ``integration``.
- ``tests/e2e``: the product from outside (demo, Prometheus, Alertmanager, Chromium,
  promtool, docker compose); marked ``integration`` too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_PROCESS_DIRS = (_HERE / "integration", _HERE / "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if any(d in path.parents for d in _PROCESS_DIRS):
            item.add_marker(pytest.mark.integration)
