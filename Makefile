# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the locked test environment (Python 3.11): `make lock` refreshes it from pyproject.toml
LOCK := requirements-test.lock
UV_VERSION ?= 0.13.9
# the Pangeo image the second environment reproduces (deploy/Dockerfile's tag is newer:
# the check that rhcloud installs into it is `make check-pangeo-latest`)
PANGEO_TAG ?= 2025.12.30
PANGEO_LATEST ?= 2026.01.30
PANGEO_VENV ?= .venv-pangeo
PANGEO_BIN := $(PANGEO_VENV)/bin

.PHONY: install system-deps demo test test-pangeo pangeo-env check-pangeo-latest lock lint clean

# the lock, exactly (hashes checked), then rhcloud itself without resolving anything again
$(BIN)/rhcloud: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

install: $(BIN)/rhcloud

# Reference tools for parity tests (CDO, R nlme/mgcv) and the report screenshot (Chromium).
system-deps:
	./.ci/system-deps

demo: install
	$(BIN)/rhcloud demo

test: install system-deps
	$(BIN)/ruff check rhcloud tests benchmarks
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=15

# Python 3.12 and pangeo-notebook:$(PANGEO_TAG)'s versions of every package rhcloud and its
# tests use, rhcloud installed on top and checked to have changed none of them
$(PANGEO_VENV)/pangeo-env.json: pyproject.toml .ci/pangeo_env.py
	$(PYTHON) .ci/pangeo_env.py --tag $(PANGEO_TAG) --venv $(PANGEO_VENV)

pangeo-env: $(PANGEO_VENV)/pangeo-env.json

# the fast suite (no end-to-end tests) in that environment
test-pangeo: pangeo-env
	$(PANGEO_BIN)/pytest -q -n 2 --dist loadfile -m "not slow" --durations=10

# the newest image: would installing rhcloud change any of its packages (scipy 1.17.0)?
check-pangeo-latest:
	$(PYTHON) .ci/pangeo_env.py --tag $(PANGEO_LATEST) --check-only --extras test

# refresh the lock: the newest versions pyproject.toml's ranges allow, for Python 3.11
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --extra test --extra pygam \
	  --python-version 3.11 --generate-hashes --upgrade -o $(LOCK)

lint: install
	$(BIN)/ruff check rhcloud tests benchmarks

clean:
	rm -rf demo-world demo-output .pytest_cache .hypothesis
