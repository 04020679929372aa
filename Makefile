# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/surge up

# Debian packages only the tests need, each run by the tests from a temporary directory of their
# own (no system service is configured or started): postfix (end-to-end bounces), chromium (the
# console and donor pages in a real browser), pgbouncer (the core flows in transaction mode),
# prometheus (promtool checks the alert rules; a real Prometheus scrapes every process).
# Postfix is preseeded as "No configuration" so that installing it sets up no mail server.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PACKAGES := /usr/sbin/postfix:postfix /usr/bin/chromium:chromium \
	/usr/sbin/pgbouncer:pgbouncer /usr/bin/prometheus:prometheus

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  test -x "$${pair%%:*}" || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "postfix postfix/main_mailer_type select No configuration" | $(SUDO) debconf-set-selections && \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# Two pytest workers, each with its own embedded PostgreSQL; a module's tests stay together on
# one worker (its servers are started once per module). Most tests wait on servers and child
# processes, so two workers finish in about two thirds of the serial time on 2 cores.
test: $(STAMP) system-packages
	$(BIN)/pytest -q -n 2 --dist loadfile tests

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

# Each scenario prints one JSON object; docs/benchmarks.md records what they printed here.
bench: $(STAMP)
	$(BIN)/surge bench jobs --jobs 100000 --json
	$(BIN)/surge bench import --rows 1000000 --json
	$(BIN)/surge bench export --rows 1000000 --json
	$(BIN)/surge bench dispatch --recipients 1000000 --baseline-recipients 20000 --dkim-recipients 100000 --json
	$(BIN)/surge bench ingest --json
	$(BIN)/surge bench ingest --tracing-sample 0.01 --json
	$(BIN)/surge bench giving-day --json
	$(BIN)/surge bench giving-day --views-per-donation 0 --live-viewers 0 --json
	$(BIN)/surge bench journeys --contacts 100000 --json
	$(BIN)/surge bench segments --contacts 1000000 --events 10000000 --json
	$(BIN)/surge bench console --contacts 1000000 --events 10000000 --json
	$(BIN)/surge bench scale --json

clean:
	rm -rf $(VENV) .surge .pytest_cache .mypy_cache .ruff_cache
