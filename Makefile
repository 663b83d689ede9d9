# Everything a newcomer needs: `make demo` runs the hello-world pipeline on a local
# cluster, `make test` runs the whole test suite. Both set up .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test bench bench-smoke labextension clean

LABEXT_DIR := $(VENV)/share/jupyter/labextensions/rain-jupyter

# The editable install also builds the JupyterLab extension (npm ci and build in
# labextension/, through hatch-jupyter-builder) and installs it into the venv.
$(STAMP): pyproject.toml labextension/package.json labextension/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Rebuild the JupyterLab extension after editing labextension/ and refresh the copy the
# editable install put into the venv (reload JupyterLab in the browser afterwards).
labextension: $(STAMP)
	cd labextension && PATH="$(abspath $(VENV))/bin:$$PATH" npm run build:prod
	rm -rf $(LABEXT_DIR)
	cp -r rain_jupyter/labextension $(LABEXT_DIR)
	cp install.json $(LABEXT_DIR)/install.json

demo: $(STAMP)
	$(PY) examples/hello_world.py

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py

bench-smoke: $(STAMP)
	$(PY) benchmarks/run.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info rain_jupyter/labextension labextension/lib \
		labextension/node_modules labextension/tsconfig.tsbuildinfo
