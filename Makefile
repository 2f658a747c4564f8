# The two promises of the README: `make demo` and `make test` on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test fuzz lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the package and its dev tools

demo: $(STAMP)  ## the embedded default: SQLite + the bundled CIFAR-10 sample
	HPO_DATA_DIR=$${HPO_DATA_DIR:-$(CURDIR)/data} $(BIN)/hpo demo

# pytest-xdist processes running test files side by side (0: the whole suite in one process)
TEST_WORKERS ?= 2

test: $(STAMP)  ## the test suite against a real (fresh) PostgreSQL database, TEST_WORKERS files at a time
	bash scripts/with_postgres.sh $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

fuzz: $(STAMP)  ## the API fuzzed from its OpenAPI schema at length (make test runs 25 examples per operation)
	HPO_FUZZ_EXAMPLES=$${HPO_FUZZ_EXAMPLES:-1000} bash scripts/with_postgres.sh $(BIN)/pytest tests/service/test_fuzz_openapi.py

lint: $(STAMP)  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## quick benchmarks (see docs/benchmarks.md for full runs)
	bash scripts/with_postgres.sh sh -c 'for b in train_throughput coordination search_efficiency; do $(BIN)/python -m benchmarks.$$b --quick || exit 1; done'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache hpo.db artifacts
