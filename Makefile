# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install system-deps demo test lint clean

$(BIN)/rhcloud: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,pygam]"
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

lint: install
	$(BIN)/ruff check rhcloud tests benchmarks

clean:
	rm -rf demo-world demo-output .pytest_cache .hypothesis
