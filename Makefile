# Two commands on a fresh machine: `make run` and `make test`. Both go through
# `make setup`, which is idempotent: it only does what is missing or out of date.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_HOME := $(CURDIR)/.flowerbed/flwr-home

# Debian packages the platform and its tests use (installed only when root and missing).
# docker-compose pulls in docker.io (the engine); debootstrap builds the compose tests' stand-in bases;
# nginx-light runs the dashboard's nginx configuration in tests.
APT_PACKAGES := dataset-fashion-mnist chromium chromium-driver postgresql-15 docker-compose wrk debootstrap nginx-light

.PHONY: setup system-packages web web-types run test lint bench clean lock wheelhouse compose-up compose-down

setup: system-packages $(STAMP) web

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $$missing; }; \
	  else \
	    echo "warning: missing Debian packages:$$missing (run 'make setup' as root, or sudo apt-get install$$missing)"; \
	  fi; \
	fi

# One lock for everything: requirements.lock (every runtime package, transitive, hash-pinned) is
# what this venv and every image install; requirements-dev.lock adds the test tools on top of it.
# `--no-deps` + `pip check`: a package missing from the lock fails here instead of hiding.
# services/clientapp after the app: `flowerbed-supernode` moved from the app to it, and
# replacing an older app install would otherwise delete the new script.
$(STAMP): requirements.lock requirements-dev.lock services/flowerapp/pyproject.toml services/backend/pyproject.toml services/clientapp/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --require-hashes --no-deps -r requirements.lock -r requirements-dev.lock
	$(PIP) install -q --no-deps --no-build-isolation -e services/flowerapp -e services/backend
	$(PIP) install -q --no-deps --no-build-isolation -e services/clientapp
	$(PIP) check
	touch $(STAMP)

# Regenerate the locks from the direct pins (requirements.txt, requirements-dev.txt). torch's CPU
# wheel must be reachable by pip (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or a
# find-links directory in pip's configuration).
lock: $(STAMP)
	$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-header -o requirements.lock requirements.txt
	$(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-header -o requirements-dev.lock requirements-dev.txt

# The lock's wheels in .wheelhouse/: image builds then install from them only (offline, hash-checked).
wheelhouse: $(STAMP)
	$(PIP) download -q --require-hashes --no-deps -d .wheelhouse -r requirements.lock

# The compose stack on this machine's Docker engine, third-party bases stood in by images built from
# Debian packages (deploy/compose_harness). TLS=1 adds compose.tls.yaml; V=1 on down removes volumes.
compose-up: setup
	PYTHONPATH=deploy $(PY) -m compose_harness up $(if $(TLS),--tls)

compose-down:
	PYTHONPATH=deploy $(PY) -m compose_harness down $(if $(V),--volumes)

# The dashboard (services/web): `npm ci` only when node_modules is missing or older than the lockfile,
# `npm run build` only when a source is newer than the built dist/index.html.
WEB := services/web
WEB_SOURCES := $(shell find $(WEB)/src -type f 2>/dev/null) $(addprefix $(WEB)/,index.html vite.config.ts tsconfig.json package.json)

web: $(WEB)/dist/index.html

$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: install Node.js >= 20.19 and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(WEB)/dist/index.html: $(WEB)/node_modules/.package-lock.json $(WEB_SOURCES)
	cd $(WEB) && npm run build

# The dashboard's API types from the backend's OpenAPI document (the app object, no server); checked in, and
# tests/backend/test_api_types.py fails when they are out of date.
web-types: $(STAMP) $(WEB)/node_modules/.package-lock.json
	$(PY) -m flowerbed.api.openapi_export | (cd $(WEB) && npx --no-install openapi-typescript -o src/api_types.ts)

run: setup
	$(VENV)/bin/flowerbed up --nodes 3

# The dashboard's lint and unit tests (vitest, no browser) first: seconds, before the federations.
# Then two pytest sessions side by side: the tests selected by ALONGSIDE_TESTS — marked `containers`
# (compose stacks on the Docker engine: mostly waiting on containers), `bench_smoke` (benchmark
# scripts at tiny size) or `alongside` (self-contained modules with their own federations, moved
# there so the two sessions take about as long) — and all the others (`not (...)` of the same
# expression, so each test is in exactly one: tests/test_sessions.py checks it); the second
# session's output is printed once both are done, and either failing fails `make test`. `pytest`
# alone runs them all in turn. Each session's per-test times land in test-artifacts/junit-*.xml
# (where CI time goes: move a module with `pytestmark = pytest.mark.alongside` to rebalance).
ALONGSIDE_TESTS := containers or bench_smoke or alongside
test: setup
	cd $(WEB) && npm run --silent lint && npm run --silent test
	@log=$$(mktemp); \
	$(PY) -m pytest -m "$(ALONGSIDE_TESTS)" -p no:cacheprovider --junitxml=test-artifacts/junit-alongside.xml > $$log 2>&1 & alongside=$$!; \
	$(PY) -m pytest -m "not ($(ALONGSIDE_TESTS))" --junitxml=test-artifacts/junit-others.xml; others=$$?; \
	wait $$alongside; with_alongside=$$?; \
	echo; echo "==================== tests with containers, bench smokes and the modules marked alongside (run alongside) ===================="; \
	cat $$log; rm -f $$log; \
	echo "make test: main session exited $$others, the session alongside $$with_alongside"; \
	test $$others -eq 0 && test $$with_alongside -eq 0

# Benchmarks are never part of `make test` (tests/e2e/test_bench_smoke.py runs each script tiny).
bench: setup
	$(PY) bench/cold_start.py
	$(PY) bench/aggregation.py
	$(PY) bench/round_latency.py --nodes 3 --rounds 10 --skip-subprocess --flower-nodes
	$(PY) bench/first_batch.py
	$(PY) bench/idle_cost.py --nodes 3
	$(PY) bench/tracing_overhead.py
	$(PY) bench/api_latency.py
	$(PY) bench/predict_latency.py
	$(PY) bench/time_to_accuracy.py --nodes 10 --rounds 10 --partitioner iid
	$(PY) bench/scale.py --nodes 10 20
	$(PY) bench/client_throughput.py
	$(PY) bench/simulation.py --clients 1000 --rounds 3

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd $(WEB) && npm run --silent lint

clean:
	rm -rf .flowerbed
