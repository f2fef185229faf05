# mmrefvlm quick start. `make demo` and `make test` each create .venv if missing, install the pinned
# requirements and the package (editable), then run. A second run skips the install (stamp file).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.mmrefvlm-installed
REQS := requirements/runtime.txt requirements/tests.txt requirements/assets.txt setup.py
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo lint test test-all gpu-check bench clean-venv

install: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) install -q --no-deps -r requirements/assets.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $@

# The main job on the embedded default: train the demo stage-2 config on the generated dataset, then
# test it (metrics + overlays under work_dirs/demo).
demo: install
	OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(PY) tools/run_demo.py

# Lint and format rules (ruff.toml) and static types (mypy.ini), as HOUSE_STYLE §8 asks.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy mmrefvlm

# Lint, then the test suite (CPU, offline, one thread per process).
test: lint
	$(PY) -m pytest -q -m "not slow and not gpu" tests projects; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# On a CUDA machine, in an environment that has CUDA torch and this package (`pip install -e .`,
# see docs/get_started.md "GPU"): the suite and the gpu-marked tests with pytest-xdist, then a
# summary (work_dirs/gpu_check/summary.md). Not part of `make test` / CI.
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) tools/misc/gpu_check.py

test-all: install
	$(PY) -m pytest -q tests projects

clean-venv:
	rm -rf $(VENV)
