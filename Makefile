# Octopus. `make run` brings the platform up; `make test` runs every test. Both set up what is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench audit-deps services-status services-stop lock clean

$(STAMP): requirements/base.txt requirements/dev.txt
	@test -x $(PY) || $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Octopus needs Python 3.11+ (found $(PYTHON)); set PYTHON=/path/to/python3.11"; exit 1; }
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

# pip-audit lives in its own venv (its dependencies stay out of the project's pins); it needs to
# reach its vulnerability service, so it is not a CI gate.
AUDIT_VENV := var/tools/pip-audit
audit-deps: install
	test -x $(AUDIT_VENV)/bin/pip-audit || { $(PY) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install --quiet pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit --strict --disable-pip --no-deps -r requirements/base.txt  # base.txt pins everything

services-status: install
	$(PY) manage.py services status

services-stop: install
	$(PY) manage.py services stop

clean:
	-$(PY) manage.py services stop
	rm -rf var
