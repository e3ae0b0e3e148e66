# engage-milter developer entry points. Everything runs on this machine: apt packages
# (scripts/install-deps, needs root or sudo), a .venv with the project, and private
# Redis / milter / Postfix instances (never the system ones).
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install build-deps-deb build-deps-rpm run stop lint typecheck test bench deb rpm clean distclean

install:
	scripts/install-deps

# What building the packages needs, only (no Postfix, Redis, Chromium or venv).
build-deps-deb:
	scripts/install-build-deps deb

build-deps-rpm:
	scripts/install-build-deps rpm

run:
	scripts/run-sandbox

stop:
	scripts/stop-sandbox

# ruff with the rules in ruff.toml (STYLE.md's small set).
lint: install
	$(VENV)/bin/ruff check milter redirector tests

# mypy --strict over engage and engage_milter, configured in setup.cfg's [mypy] section.
typecheck: install
	$(VENV)/bin/mypy

# The same command the README gives: install-deps, then pytest from the venv.
test: install lint typecheck
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Every tests/bench/bench_*.py script, one after the other; stops at the first failure.
bench: install
	@set -e; found=0; \
	for f in tests/bench/bench_*.py; do \
	    [ -e "$$f" ] || continue; found=1; \
	    echo "== $$f"; $(PYTHON) "$$f"; \
	done; \
	[ $$found = 1 ] || echo "no tests/bench/bench_*.py scripts yet"

# Packages (docs/packaging.md). Built in a temporary copy of the tree, never in it, with
# Debian's python3 and the build dependencies only (scripts/install-build-deps).
# deb: dpkg-buildpackage (debhelper, pybuild) from packaging/debian, then lintian.
# rpm: rpmbuild from packaging/rpm/engage-milter.spec (--nodeps on Debian), then rpm -qlp.
DEB_OUT ?= dist/deb
RPM_OUT ?= dist/rpm
VERSION := $(shell sed -n 's/^version *= *//p' setup.cfg)

deb: build-deps-deb
	packaging/build-deb $(DEB_OUT)
	lintian --fail-on error --display-level '>=pedantic' $(DEB_OUT)/engage-milter_$$(\
	    dpkg-parsechangelog -l packaging/debian/changelog -S Version)_$$(dpkg --print-architecture).changes
	@echo "lintian: no errors; packages in $(DEB_OUT)"

rpm: build-deps-rpm
	packaging/build-rpm $(RPM_OUT)
	@for f in $(RPM_OUT)/*-$(VERSION)-*.noarch.rpm; do \
	    echo "== rpm -qlp $$f"; rpm -qlp "$$f" 2>/dev/null | grep -v __pycache__; \
	done

# Stops the sandbox, removes run/ (with what sandbox-postfix kept under /var/tmp for it)
# and build/test leftovers; keeps .venv (slow to rebuild). run/postfix is root's.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
clean: stop
	@for link in run/postfix run/sink; do \
	    if [ -L "$$link" ]; then echo "rm -rf $$(readlink -f "$$link")"; $(SUDO) rm -rf "$$(readlink -f "$$link")"; fi; \
	done
	$(SUDO) rm -rf run
	rm -rf build dist .pytest_cache .mypy_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
