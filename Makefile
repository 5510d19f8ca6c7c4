# Leadflow: `make run` starts the embedded stack, `make test` runs the whole suite.
# Needs only Python 3.11 and pip: uv is bootstrapped from PyPI into .tools/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install system-deps run demo test test-unit soak lint bench check-deploy clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml tools/pyproject.toml $(wildcard services/*/pyproject.toml)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced ## create .venv with every package of the workspace

# Debian packages the tests run: promtool, amtool and prometheus (tests/deploy) and chromium
# with its driver (browser tests). Installed with apt only when a command is missing.
SYSTEM_COMMANDS := promtool amtool prometheus chromium chromedriver
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium chromium-driver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

system-deps: ## Debian packages the tests need (prometheus, alertmanager, chromium), if missing
	@missing=""; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(SYSTEM_PACKAGES) with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

run: install ## start PostgreSQL, the broker, migrations, topics and the six services
	$(VENV)/bin/leadflow run

demo: install ## a simulated week in about 3 minutes: traffic, reps, breaches, the weekly report and the review page
	$(VENV)/bin/leadflow demo $(DEMO_ARGS)

# Test files run in TEST_WORKERS processes (pytest-xdist), each with its own embedded PostgreSQL
# and broker; a file's tests stay together in one process. TEST_WORKERS=0 runs them in this one.
TEST_WORKERS ?= 2

test: install system-deps ## the whole suite: unit, integration (real PostgreSQL + broker), e2e and deploy
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: install
	$(VENV)/bin/pytest tests/unit

soak: install ## long reliability runs: 10,000 leads through the crash test and through five broker resets, a 2-minute broker outage, more fuzzing
	LEADFLOW_CRASH_LEADS=10000 LEADFLOW_BROKER_OUTAGE_SECONDS=120 LEADFLOW_FUZZ_EXAMPLES=100 LEADFLOW_FUZZ_RANDOM=1 \
	LEADFLOW_BROKER_RESET_LEADS=10000 LEADFLOW_BROKER_RESETS=3,10,60,10,3 \
		$(VENV)/bin/pytest tests/reliability tests/security

lint: install
	$(VENV)/bin/ruff check .

bench: install ## benchmarks (not tests), table into docs/benchmarks.md; BENCH_LEADS=50000 for full size
	PYTHONPATH=tests $(VENV)/bin/python bench/run.py

check-deploy: system-deps ## Prometheus rules, their unit tests and the Alertmanager config (needs promtool, amtool)
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	amtool check-config deploy/alertmanager/alertmanager.yml

clean:
	rm -rf .venv .tools .leadflow .pytest_cache
