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
APT_PACKAGES := dataset-fashion-mnist chromium chromium-driver postgresql-15 docker-compose

.PHONY: setup system-packages run test lint bench clean

setup: system-packages $(STAMP)

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

$(STAMP): requirements.txt requirements-dev.txt services/flowerapp/pyproject.toml services/backend/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt -r requirements-dev.txt
	$(PIP) install -q --no-deps --no-build-isolation -e services/flowerapp -e services/backend
	touch $(STAMP)

run: setup
	$(VENV)/bin/flowerbed up --nodes 3

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf .flowerbed
