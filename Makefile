# Set-up, tests, demo and benchmarks. Every target creates .venv/ first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-all demo audit bench clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) tools/infer.py --source demo/scans

audit: setup
	$(PY) tools/audit.py --out runs/audit

clean-venv:
	rm -rf $(VENV)
