# Set-up and the two commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps demo lint test test-tensorflow test-jax bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Chromium and its driver for the dashboard's browser test (Debian packages; skipped if present).
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "note: could not install chromium; the browser test will skip"; }

# Analyse the bundled sample (a CREMA-D clip, its audio and a frame) with the shipped models.
demo: install
	$(VENV)/bin/emotion-keras predict samples/face.jpg samples/speech.wav samples/clip.flv --json

# Two pytest workers (pytest-xdist), one test file each at a time: module fixtures are built once, and
# one worker's compile or data loading overlaps the other's training on the two cores.
XDIST = -n 2 --dist loadfile
PYTEST_ARGS ?=

test-tensorflow: install system-deps
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -p no:cacheprovider $(XDIST) $(PYTEST_ARGS)

# Tests marked `once` (backend-independent, or comparing the backends themselves) ran in the first pass.
# JAX's persistent compilation cache: tiny test models share graphs across tests and subprocesses.
test-jax: install system-deps
	KERAS_BACKEND=jax JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5 $(PY) -m pytest -q -p no:cacheprovider -m "not once" $(XDIST) $(PYTEST_ARGS)

# Style and pyflakes-level errors (configuration in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .

test: lint test-tensorflow test-jax

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache runs
