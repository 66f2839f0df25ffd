# arbframe developer commands. Quick start: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# stevedore caches entry points under XDG_CACHE_HOME with coarse file times; a private dir keeps a fresh
# install visible at once.
export XDG_CACHE_HOME := $(CURDIR)/.venv/.xdg-cache

PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
EXAMPLE_DIRS := $(sort $(dir $(wildcard examples/*/pyproject.toml)))
PROJECT_FILES := pyproject.toml $(addsuffix pyproject.toml,$(PLUGIN_DIRS) $(EXAMPLE_DIRS))
STAMP := $(VENV)/.installed

# Debian packages the tests use: binary -> package. Installed when missing and we run as root.
DEB_NEEDS := initdb:postgresql redis-server:redis-server prometheus:prometheus promtool:prometheus \
	prometheus-postgres-exporter:prometheus-postgres-exporter prometheus-redis-exporter:prometheus-redis-exporter \
	docker-compose:docker-compose amtool:prometheus-alertmanager

RUN_ARGS ?= --interval 1 --max-iterations 20

.PHONY: install run test lint bench deb clean help

help:
	@echo "make run    - install (first time) and run a paper session on the embedded defaults"
	@echo "make test   - install and run the whole test suite"
	@echo "make lint   - ruff"
	@echo "make bench  - run every benchmark in benchmarks/"

install: $(STAMP)

$(STAMP): $(PROJECT_FILES) | deb
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,server,fast]' \
		$(foreach d,$(PLUGIN_DIRS),-e $(d))
	@mkdir -p $(XDG_CACHE_HOME)
	@# wheels of the kernel's dependencies, so tests can build fresh virtual environments offline
	$(PY) -m pip wheel --quiet --disable-pip-version-check -w $(VENV)/wheelhouse \
		setuptools wheel pluggy stevedore jsonschema PyYAML prometheus-client
	@touch $@

deb:
	@missing=""; for pair in $(DEB_NEEDS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
		if ! command -v $$bin >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/$$bin >/dev/null 2>&1; then \
			case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Debian packages:$$missing"; \
			export DEBIAN_FRONTEND=noninteractive; \
			(apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/tmp/arbframe-apt.log 2>&1 \
				|| { echo "apt-get failed (see /tmp/arbframe-apt.log); tests needing:$$missing will skip"; }; \
			for svc in prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-redis-exporter; do \
				(service $$svc stop || pkill -x $$svc) >/dev/null 2>&1 || true; done; \
		else echo "missing Debian packages:$$missing (not root: tests needing them will skip)"; fi; \
	fi

run: install
	$(VENV)/bin/arbframe run $(RUN_ARGS)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .

bench: install
	@$(PY) -m pip install --quiet --disable-pip-version-check ccxt matplotlib orjson >/dev/null 2>&1 \
		|| echo "note: ccxt not installable; the ccxt comparisons will say so"
	@set -e; for b in benchmarks/bench_*.py; do echo; echo "=== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
