# Everything a newcomer needs: `make demo` runs the hello-world pipeline on a local
# cluster, `make test` runs the whole test suite. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/hello_world.py

test: $(STAMP)
	$(PY) -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-smoke: $(STAMP)
	$(PY) benchmarks/run.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info
