"""The test suite's shared fixtures, loaded as a pytest plugin (``-p tests.support.plugin``
in pyproject.toml), so every test directory gets the same ones without copies.

- ``engine_path``: run a module's engine tests on the C loops and on the Python ones.
- ``kafka_broker`` / ``worker_factory``: a real tansu broker and real worker processes
  (``tests/fixtures_kafka.py``); ``example_estate``: the example catalog on that broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fixtures_kafka import example_estate, kafka_broker, worker_factory

__all__ = ["engine_path", "example_estate", "kafka_broker", "worker_factory"]


@pytest.fixture(scope="module", params=["c", "python"])
def engine_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once on the C loops (``streams/_native.c``) and once
    on the pure-Python ones: both must give the same numbers. Module-scoped, so that
    hypothesis tests can use it. Models built under one path keep working under the
    other (a model without a C plan takes the Python loop)."""
    from streams import native

    saved = native.native
    if request.param == "c" and saved is None:
        if os.environ.get("SLAWATCH_NATIVE", "1") == "0":
            pytest.skip("SLAWATCH_NATIVE=0: the C loops are turned off")
        pytest.fail("the C extension streams._native is not built: "
                    "run `make .venv/.installed` (needs a C compiler and Python headers)")
    if request.param == "python":
        native.native = None
    try:
        yield request.param
    finally:
        native.native = saved
