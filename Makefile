# slawatch: the two commands of a fresh machine are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck check bench system-deps clean lock

$(STAMP): pyproject.toml setup.py streams/_native.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The extension is optional (setup.py): a compile error installs without it and
	@# says nothing, leaving no .so or an older one. Said here, not failed.
	@test ! streams/_native.c -nt "$$(ls streams/_native*.so 2>/dev/null | head -1)" || \
	  echo "make: streams/_native.c was not built (the loops run in Python, or on an older build): see $(PY) -m pip install -v -e ." >&2
	@touch $(STAMP)

## demo: embedded Kafka-compatible broker + worker + failure simulator (Ctrl-C stops all)
demo: $(STAMP)
	$(VENV)/bin/slawatch demo

## system-deps: promtool, amtool, chromium, docker compose client (Debian packages) for the tests
system-deps:
	PYTHON=$(PYTHON) bash scripts/install-system-deps

## test: the whole suite (starts its own brokers, workers and Prometheus)
# Three test processes on two cores: the integration tests spend much of their time
# waiting for workers to join, recover and catch up. Measured on a clean clone: two
# processes 19-20 minutes, three 14 (the cores still 33% idle over that run, 50-80%
# idle through most of its integration tests).
test: system-deps $(STAMP)
	$(PY) -m pytest -q -n 3 --dist loadfile

## test-fast: the unit tests (no process started), without those marked slow
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 tests/unit -m 'not slow'

## lock: requirements.lock (the Docker image's pinned dependencies, with hashes)
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	printf 'setuptools>=77\n' > .build-requirements.in
	{ echo "# Pinned runtime dependencies of the Docker image, with hashes (pip install --require-hashes)."; \
	  echo "# Made by \`make lock\` (uv pip compile --universal --generate-hashes) from pyproject.toml;"; \
	  echo "# setuptools builds slawatch itself."; \
	  $(VENV)/bin/uv pip compile pyproject.toml .build-requirements.in --universal --generate-hashes \
	    --python-version 3.11 --no-header | sed 's#-r .build-requirements.in#-r build requirement of slawatch#'; \
	} > requirements.lock
	rm -f .build-requirements.in

lint: $(STAMP)
	$(VENV)/bin/ruff check streams agents tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## check: validate the example catalog and print the internal-vs-external table
check: $(STAMP)
	$(VENV)/bin/slawatch check config/services.yaml

bench: $(STAMP)
	$(PY) bench/engine.py
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
