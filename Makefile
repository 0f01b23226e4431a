# SafeRoll: `make demo` runs the whole product locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The test suite runs on the real services: PostgreSQL and Redis on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saferoll
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
PYTEST_WORKERS ?= 2
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	SAFEROLL_SECRET_KEY=test-only-secret SAFEROLL_ENROLLMENT_KEY=test-enrollment-key SAFEROLL_DB_POOL=false \
	PGOPTIONS="-c synchronous_commit=off"

# Checked by mypy in `make lint` (django-stubs and djangorestframework-stubs): every package of the code.
MYPY_TARGETS := saferoll devices telemetry rollouts simulator

.PHONY: install demo serve test lint check bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	touch $@

# The portal and autopilot (manage.py serve, logging to .saferoll/serve.log) and 1,000 simulated
# devices with the simulator's prompt; Ctrl-C or `quit` stops everything. `demo` seeds the demo
# world itself and prints the logins once, with their new passwords.
demo: install
	$(PY) manage.py migrate --no-input --verbosity 0
	$(PY) manage.py demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=. $(BIN)/lint-imports --no-cache
	SAFEROLL_SECRET_KEY=lint-only $(BIN)/mypy $(MYPY_TARGETS)

check: install
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

test: lint check
	$(TEST_ENV) $(BIN)/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Benchmarks measure; tests never assert timings. Each prints its figures and merges them into
# bench-results.json. The what-if replays need no server; their `manage.py` reads plans from the
# configured database (DATABASE_URL, else the embedded SQLite) and falls back to the presets. The
# scale part builds a 1,000,000-device fleet in a PostgreSQL database of its own, on DATABASE_URL's
# server (else postgres@127.0.0.1:5432), and drops it at the end.
WHATIF_SEED ?= 1
WHATIF := $(PY) manage.py whatif --seed $(WHATIF_SEED) --fleet 1000000 --outside-events 0.3
bench: install
	mkdir -p .saferoll
	$(PY) manage.py migrate --no-input --verbosity 0
	$(WHATIF) --plan production --runs 400 --json .saferoll/whatif-production.json
	$(PY) -m tests.benchmarks.merge .saferoll/whatif-production.json
	$(WHATIF) --plan demo --runs 200 --json .saferoll/whatif-demo.json
	$(PY) -m tests.benchmarks.merge .saferoll/whatif-demo.json --prefix demo.
	$(WHATIF) --plan staging --runs 200 --json .saferoll/whatif-staging.json
	$(PY) -m tests.benchmarks.merge .saferoll/whatif-staging.json --prefix staging.
	$(PY) -m tests.benchmarks.autopilot_reaction
	$(PY) -m tests.benchmarks.scale

# Regenerate requirements.lock after changing pyproject.toml.
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .saferoll .pytest_cache
