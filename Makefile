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

# The lowest Python every distribution declares (requires-python >= 3.10). `make test` also runs the kernel's
# tests (tests/) on it when the machine has one, so a construct newer than 3.10 cannot land unnoticed.
PY_LOWEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10 /usr/local/bin/python3.10 \
	/usr/bin/python3.10))
VENV_LOWEST := .venv-py310
# `make test-pythons`: the whole suite on each of these as well (by hand: about 4 minutes each)
PY_OTHERS ?= $(PY_LOWEST) $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12 /usr/bin/python3.12))

# install KERNEL+PLUGINS editable into venv $(1) made by interpreter $(2), with the offline wheelhouse the
# fresh-environment tests build from
define venv_install
	@test -x $(1)/bin/python || $(2) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,server,fast]' \
		$(foreach d,$(PLUGIN_DIRS),-e '$(d)$(if $(shell grep -s -l "^test = " $(d)pyproject.toml),[test])')
	@mkdir -p $(1)/.xdg-cache
	@# wheels of the kernel's dependencies, so tests can build fresh virtual environments offline
	$(1)/bin/python -m pip wheel --quiet --disable-pip-version-check -w $(1)/wheelhouse \
		setuptools wheel pluggy stevedore jsonschema PyYAML prometheus-client tzdata
	@touch $(1)/.installed
endef

.PHONY: install run test test-lowest test-pythons lint bench deb clean help

help:
	@echo "make run    - install (first time) and run a paper session on the embedded defaults"
	@echo "make test   - install and run the whole test suite"
	@echo "make lint   - ruff and mypy (the kernel)"
	@echo "make bench  - run every benchmark in benchmarks/"

install: $(STAMP)

$(STAMP): $(PROJECT_FILES) | deb
	$(call venv_install,$(VENV),$(PYTHON))

$(VENV_LOWEST)/.installed: $(PROJECT_FILES) | deb
	$(call venv_install,$(VENV_LOWEST),$(PY_LOWEST))

# While apt-get runs, a policy-rc.d that exits 101 ("action forbidden") stops Debian's maintainer scripts from
# starting the services the packages ship (prometheus, its exporters, postgresql, redis), so nothing has to be
# stopped afterwards: no process is started that we did not start, and none is killed by name. An existing
# policy-rc.d (container images ship one) is left alone; ours is removed on every exit path.
DEB_POLICY ?= /usr/sbin/policy-rc.d
APT_GET ?= apt-get

deb:
	@missing=""; for pair in $(DEB_NEEDS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
		if ! command -v $$bin >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/$$bin >/dev/null 2>&1; then \
			case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null; then \
			echo "installing Debian packages:$$missing (their services are not started)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			if [ ! -e "$(DEB_POLICY)" ]; then \
				trap 'rm -f "$(DEB_POLICY)"' EXIT INT TERM; \
				printf '#!/bin/sh\n# arbframe make deb: no service starts while packages install\nexit 101\n' \
					> "$(DEB_POLICY)" && chmod 755 "$(DEB_POLICY)"; fi; \
			($(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $$missing) \
				>/tmp/arbframe-apt.log 2>&1 \
				|| { echo "apt-get failed (see /tmp/arbframe-apt.log); tests needing:$$missing will skip"; }; \
		else echo "missing Debian packages:$$missing (not root: tests needing them will skip)"; fi; \
	fi

run: install
	$(VENV)/bin/arbframe run $(RUN_ARGS)

test: install
	$(PY) -m pytest -q
	@$(MAKE) --no-print-directory test-lowest

# the kernel's tests on the lowest supported Python; missing interpreter: a note, or a failure under CI=true
test-lowest:
	@if [ -z "$(PY_LOWEST)" ]; then \
		echo "no Python 3.10 on this machine: the kernel tests on the lowest supported Python did not run"; \
		[ "$$CI" != "true" ]; \
	else $(MAKE) --no-print-directory $(VENV_LOWEST)/.installed && \
		echo "kernel tests on $$($(VENV_LOWEST)/bin/python --version)" && \
		XDG_CACHE_HOME=$(CURDIR)/$(VENV_LOWEST)/.xdg-cache $(VENV_LOWEST)/bin/python -m pytest -q tests; fi

# the whole suite on every other Python the machine has (3.10, 3.12); not part of `make test`
test-pythons: install
	@set -e; for py in $(PY_OTHERS); do v=$$($$py -c 'import sys; print("%d%d" % sys.version_info[:2])'); \
		$(MAKE) --no-print-directory .venv-py$$v/.installed VENV_EXTRA=.venv-py$$v PY_EXTRA=$$py; \
		echo "whole suite on $$($$py --version)"; \
		XDG_CACHE_HOME=$(CURDIR)/.venv-py$$v/.xdg-cache .venv-py$$v/bin/python -m pytest -q; done

.venv-py%/.installed: $(PROJECT_FILES) | deb
	$(call venv_install,$(VENV_EXTRA),$(PY_EXTRA))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	@$(PY) -m pip install --quiet --disable-pip-version-check ccxt matplotlib orjson >/dev/null 2>&1 \
		|| echo "note: ccxt not installable; the ccxt comparisons will say so"
	@set -e; for b in benchmarks/bench_*.py; do echo; echo "=== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .venv-py* build .pytest_cache .ruff_cache
