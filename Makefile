# Two entry points for a fresh Debian machine with Python 3.11:
#   make demo   set up, then assign -> notify -> verify on the bundled sample register
#   make test   set up, then run the whole test suite (what CI runs)
# Set-up installs Debian packages when run as root (see .ci/debian-packages),
# creates .venv and installs rrnet into it with its test dependencies, at the
# tested versions in .ci/constraints.txt.
#   make test-newest   the suite against the newest releases (in .venv-newest)
#   make constraints   record the newest releases as the tested set

PYTHON ?= python3
VENV   ?= .venv
NEWEST ?= .venv-newest
CONSTRAINTS := .ci/constraints.txt
BIN    := $(VENV)/bin
DEMO   ?= demo
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-newest constraints setup system-packages lint clean

demo: setup
	rm -rf $(DEMO) && mkdir -m 700 $(DEMO)
	$(BIN)/rrnet ledger init $(DEMO)/ledger --municipality 139998
	$(BIN)/rrnet assign sample_data/register_ja_cp932.csv --ledger $(DEMO)/ledger -o $(DEMO)/assigned.csv
	$(BIN)/rrnet notify $(DEMO)/assigned.csv --ledger $(DEMO)/ledger --profile sample_data/profile.toml -o $(DEMO)/sheets
	$(BIN)/rrnet verify $(DEMO)/assigned.csv --ledger $(DEMO)/ledger
	$(BIN)/rrnet ledger stats --ledger $(DEMO)/ledger

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Skips the slow scale tests (CI runs them through `make test`).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

setup: system-packages $(VENV)/.installed

system-packages:
	@bash .ci/install-system-packages

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) -e '.[test]'
	touch $@

# A fresh venv with the newest release of every dependency the ranges allow, so an
# upgrade that breaks rrnet is found on purpose, not by a newcomer.
$(NEWEST)/.installed: pyproject.toml
	rm -rf $(NEWEST)
	$(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	touch $@

test-newest: system-packages
	rm -f $(NEWEST)/.installed
	$(MAKE) $(NEWEST)/.installed
	$(NEWEST)/bin/python -m pip list --format=freeze --exclude-editable
	$(NEWEST)/bin/python -m pytest $(PYTEST_ARGS)

# After `make test-newest` passed: take its versions as the tested set.
constraints: $(NEWEST)/.installed
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(NEWEST)/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# Ruff for lint and format, mypy (strict, see pyproject) for types.
lint: setup
	$(BIN)/ruff check rrnet_cli tests benchmarks
	$(BIN)/ruff format --check rrnet_cli tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(NEWEST) $(DEMO) .pytest_cache .ruff_cache .hypothesis
