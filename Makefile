# engage-milter developer entry points. Everything runs on this machine: apt packages
# (scripts/install-deps, needs root or sudo), a .venv with the project, and private
# Redis / milter / Postfix instances (never the system ones).
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install run stop test bench clean distclean

install:
	scripts/install-deps

run:
	scripts/run-sandbox

stop:
	scripts/stop-sandbox

# The same command the README gives: install-deps, then pytest from the venv.
test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Every tests/bench/bench_*.py script, one after the other; stops at the first failure.
bench: install
	@set -e; found=0; \
	for f in tests/bench/bench_*.py; do \
	    [ -e "$$f" ] || continue; found=1; \
	    echo "== $$f"; $(PYTHON) "$$f"; \
	done; \
	[ $$found = 1 ] || echo "no tests/bench/bench_*.py scripts yet"

# Stops the sandbox, removes run/ (with what sandbox-postfix kept under /var/tmp for it)
# and build/test leftovers; keeps .venv (slow to rebuild). run/postfix is root's.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
clean: stop
	@for link in run/postfix run/sink; do \
	    if [ -L "$$link" ]; then echo "rm -rf $$(readlink -f "$$link")"; $(SUDO) rm -rf "$$(readlink -f "$$link")"; fi; \
	done
	$(SUDO) rm -rf run
	rm -rf build dist .pytest_cache
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
