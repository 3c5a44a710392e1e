# The two commands: `make run` (the hub on its embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test soak security-check lint typecheck openapi clean

# The edge gateway is its own installable (gateway/, not on PyPI): installed beside the hub
# so manage.py run_gateway and the tests import it.
$(VENV)/.installed-run: pyproject.toml gateway/pyproject.toml
	deploy/local/ensure-venv.sh $(PYTHON) $(VENV)
	$(PY) -m pip install --quiet -e '.[assets]' -e ./gateway
	touch $@

$(VENV)/.installed-dev: pyproject.toml gateway/pyproject.toml
	deploy/local/ensure-venv.sh $(PYTHON) $(VENV)
	$(PY) -m pip install --quiet -e '.[dev,assets]' -e ./gateway
	touch $(VENV)/.installed-run $@

# Third-party browser code: npm installs it from the committed lock file (never copied into
# the repository); settings.py serves each package's dist/ under /static/vendor/. The stamp
# lives in node_modules, so deleting that folder reinstalls it.
FRONTEND := alliance/frontend
ASSETS   := $(FRONTEND)/node_modules/.installed

$(ASSETS): $(FRONTEND)/package.json $(FRONTEND)/package-lock.json | $(VENV)/.installed-run
	cd $(FRONTEND) && ../../$(VENV)/bin/npm ci --no-audit --no-fund
	touch $@

run: $(VENV)/.installed-run $(ASSETS)
	deploy/local/run-embedded.sh

test: $(VENV)/.installed-dev $(ASSETS)
	deploy/local/test.sh

# The scripted day (each role in Chromium), then SOAK_MINUTES (default 60) of simulated clinic
# uploads, reads and MDT chatter on `make run`'s stack, started in a data folder of its own;
# a PASS/FAIL line and the figures at the end (docs/benchmarks.md). SOAK_URL (with
# SOAK_DATA_DIR and SOAK_LOGS) targets a hub already running instead: bench/day/__main__.py.
soak: $(VENV)/.installed-dev $(ASSETS)
	deploy/local/ensure-tools.sh
	$(PY) -m bench.day

# The security probes, one line per figure (deploy/local/security_check.py): the suite's attack
# tests (read from `make test`'s report when there is one, else run here) and the DICOM
# mutation corpus through STOW-RS and the gateway (SECURITY_ARGS="--fuzz-cases 300" for less).
security-check: $(VENV)/.installed-dev $(ASSETS)
	eval "$$(deploy/local/ensure-services.sh)" && export DATABASE_URL REDIS_URL && \
	  HUB_ENV=test HUB_DATA_DIR="$${HUB_DATA_DIR:-$$PWD/var/test}" \
	  $(PY) deploy/local/security_check.py $(SECURITY_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy .

# Generated against PostgreSQL (the production database: integer ranges differ on SQLite).
openapi: $(VENV)/.installed-dev
	eval "$$(deploy/local/ensure-services.sh)" && export DATABASE_URL REDIS_URL && \
	  $(PY) manage.py spectacular --lang en --file docs/openapi.yaml --validate

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
