# atom-template: `make demo` shows a baked atom at work, `make test` runs every test.
# Both set up what they need first (scripts/setup.sh: Debian packages, .venv).

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help setup demo check test soak bench lint release clean

help:
	@echo "make demo   bake the default atom, start it, detect faces in a photo, stop it"
	@echo "make check  the quick gate while working: lint, hooks, one bake and its unit tests"
	@echo "make test   run every test of the template, every lane (sets everything up first)"
	@echo "make soak   20,000 detect calls through nginx and 2 workers: no failure, no leak"
	@echo "make bench  run every benchmark (benchmarks/), write BENCHMARKS.md"
	@echo "make lint   ruff on the hooks, scripts and tests of the template"
	@echo "make release  set the release version, date the CHANGELOG, commit, tag v<version>"
	@echo "make clean  remove build/ and the virtual environments"

setup:
	@scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

# Lint, then every test not marked slow (tests/conftest.py), its lanes side by side: under
# 2 minutes.
check: lint
	$(PY) scripts/gate.py -m "not slow"

# Every lane, several at once (scripts/gate.py); the time of each lane printed at the end.
test: setup
	$(PY) scripts/gate.py

soak: setup
	SOAK_REQUESTS=20000 $(PY) -m pytest tests/test_soak.py -s

bench: setup
	$(PY) benchmarks/run_all.py

lint: setup
	$(VENV)/bin/ruff check hooks scripts tests benchmarks
	$(VENV)/bin/ruff format --check hooks scripts tests benchmarks

# The version is _template_version of cookiecutter.json (DEVELOPERS.md, "Releasing").
release: setup
	$(PY) scripts/release.py

clean:
	rm -rf build $(VENV) $(VENV)-py312
