# Octopus. `make run` brings the platform up; `make test` runs every test. Both set up what is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench audit-deps services-status services-stop lock clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py platform

lint: install
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench

audit-deps: install
	$(VENV)/bin/pip-audit -r requirements/base.txt

services-status: install
	$(PY) manage.py services status

services-stop: install
	$(PY) manage.py services stop

clean:
	-$(PY) manage.py services stop
	rm -rf var
