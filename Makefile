# Two commands for newcomers: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skseg-installed
CONSTRAINTS := requirements/constraints.txt
PYTEST_ARGS ?=

.PHONY: install demo test unit docs docs-clean benchmark assets lint clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo ">>> creating $(VENV) and installing skseg with pinned dev dependencies ($(CONSTRAINTS))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	@echo ">>> compiling the mean-shift kernels once (numba caches them for every later run)"
	$(PY) -c "from skseg.meanshift import compile_kernels; print(f'{compile_kernels():.0f} s')"
	@touch $(STAMP)

demo: $(STAMP)
	@echo ">>> segmenting scikit-image's sample photo with MeanShiftSegmenter (writes segmentation.png)"
	$(VENV)/bin/skseg segment -o segmentation.png

unit: $(STAMP)
	@echo ">>> running the test suite (unit, property and doctests)"
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# the gallery trains on real MNIST digits when a copy sits beside the checkout
MNIST_HOME := $(firstword $(SKSEG_DATA) $(wildcard $(abspath ../shared/data/mnist)))

docs: $(STAMP)
	@echo ">>> building the Sphinx site with the executed example gallery (warnings are errors)"
	$(if $(MNIST_HOME),SKSEG_DATA=$(MNIST_HOME)) $(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

test: unit docs

docs-clean:
	rm -rf docs/_build docs/auto_examples docs/generated docs/sg_execution_times.rst

benchmark: $(STAMP)
	$(PY) benchmarks/meanshift.py
	$(PY) benchmarks/segnet.py $(if $(MNIST_HOME),--data-home $(MNIST_HOME),--throughput-only)

# the README's pictures and the gallery's SegNet model (trains for about 10 minutes)
assets: $(STAMP)
	$(PY) docs/make_assets.py $(if $(MNIST_HOME),--data-home $(MNIST_HOME))

lint: $(STAMP)
	$(VENV)/bin/ruff check skseg tests benchmarks examples

clean: docs-clean
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis segmentation.png
