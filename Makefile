# Two set-up commands (README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint docs ui explore bench clean-outputs

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)

## Materialize every asset of every bundled study, then print a summary.
run: install
	$(BIN)/dge run

## Lint, build the docs strictly, then run the test suite (2 workers, one test file per
## worker so fits are shared).
test: lint docs
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

## ruff: pycodestyle, pyflakes, import order, bugbear, pyupgrade (pyproject.toml).
lint: install
	$(BIN)/ruff check .

## The documentation site (docs/, mkdocs material), built with every warning an error.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d site

## Dagster UI + daemon on http://127.0.0.1:3000 (sensor and schedule run while it is up).
ui: install
	$(BIN)/dge ui

## The results explorer on http://127.0.0.1:8050 (after make run).
explore: install
	$(BIN)/dge explore

## Remove generated outputs under data/ (warehouse, catalog, Dagster home); studies stay.
clean-outputs:
	rm -rf data/warehouse data/catalog.duckdb data/catalog.state.json data/dagster_home data/.catalog.lock
