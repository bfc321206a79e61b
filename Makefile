# otel-excellence: two commands for a newcomer on a fresh Debian machine.
#   make demo   the distro's findings on embedded defaults (no servers needed)
#   make test   installs what the tests need, then lint, type checks and the whole suite

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint format docs collector prometheus rules dashboards stack system-deps venv clean help bench

help:
	@echo "make demo       run the demo (creates the venv)"
	@echo "make test       install test dependencies, build the Collector and Prometheus, lint, run every test"
	@echo "make lint       ruff and mypy"
	@echo "make collector  build (or reuse) the otelcol-excellence binary"
	@echo "make prometheus build (or reuse) prometheus and promtool 3.x"
	@echo "make rules      regenerate the SLO alert rules from deploy/slos.yaml"
	@echo "make dashboards regenerate grafana/dashboards/*.json from scripts/dashboards.py"
	@echo "make stack      the Collector and Prometheus on loopback, without Docker"
	@echo "make bench      overhead side by side with vanilla OTel and logfire (~15-30 min;"
	@echo "                BENCH_ARGS=--quick: a few minutes); see docs/benchmarks.md"

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "make: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,demo]'
	touch $(STAMP)

venv: $(STAMP)

# On embedded defaults (SQLite, in-process Redis, the dev console); set
# OTEL_EXPORTER_OTLP_ENDPOINT to export over OTLP instead (e.g. to `make stack`).
demo: $(STAMP)
	$(BIN)/otel-excellence demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

system-deps:
	scripts/install-system-deps.sh

docs: $(STAMP)
	$(BIN)/python scripts/update_docs.py

collector:
	@scripts/build-collector.sh

# Prometheus 3 (the release docker-compose.yml runs), built from its Go module and cached
# outside the repo; Debian's 2.42 evaluates range windows differently.
prometheus:
	@scripts/build-prometheus.sh

rules: $(STAMP)
	$(BIN)/python scripts/slo_rules.py

dashboards: $(STAMP)
	$(BIN)/python scripts/dashboards.py

stack: system-deps $(STAMP)
	OTELCOL_BIN=$$(scripts/build-collector.sh) PROMETHEUS_BIN_DIR=$$(scripts/build-prometheus.sh) \
	$(BIN)/python scripts/stack.py

# pytest exits 5 when it collected nothing: a suite that ran no test must not pass.
test: system-deps $(STAMP) lint
	OTELCOL_BIN=$$(scripts/build-collector.sh) && export OTELCOL_BIN && \
	PROMETHEUS_BIN_DIR=$$(scripts/build-prometheus.sh) && export PROMETHEUS_BIN_DIR && \
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

# Not part of `make test`: builds the peers' venvs under ~/.cache/otel-excellence/bench
# (once per set of pins) and measures for 15-30 minutes; BENCH_ARGS=--quick for ~10.
BENCH_ARGS ?=
bench: system-deps $(STAMP)
	OTELCOL_BIN=$$(scripts/build-collector.sh) && export OTELCOL_BIN && \
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
