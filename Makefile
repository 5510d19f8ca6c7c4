# Leadflow: `make run` starts the embedded stack, `make test` runs the whole suite.
# Needs only Python 3.11 and pip: uv is bootstrapped from PyPI into .tools/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test test-unit lint bench check-deploy clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced ## create .venv with every package of the workspace

run: install ## start PostgreSQL, the broker, migrations, topics and the five services
	$(VENV)/bin/leadflow run

test: install ## the whole suite: unit, integration (real PostgreSQL + broker) and e2e
	$(VENV)/bin/pytest

test-unit: install
	$(VENV)/bin/pytest tests/unit

lint: install
	$(VENV)/bin/ruff check .

bench: install ## benchmarks (not tests), table into docs/benchmarks.md; BENCH_LEADS=50000 for full size
	$(VENV)/bin/python bench/run.py

check-deploy: ## Prometheus rules, their unit tests and the Alertmanager config (needs promtool, amtool)
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	amtool check-config deploy/alertmanager/alertmanager.yml

clean:
	rm -rf .venv .tools .leadflow .pytest_cache
