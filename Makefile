# The two contract commands (README): `make demo` and `make test`. Each creates .venv if missing, installs
# the local CPU torch and the rest, builds the extension without build isolation, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH ?= torch==2.13.0
DEPS_STAMP := $(VENV)/.emms-deps
BUILD_STAMP := $(VENV)/.emms-build
SOURCES := $(shell find csrc cmake -type f) CMakeLists.txt pyproject.toml

.PHONY: install test demo bench cuda-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements-dev.txt | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(TORCH) -r requirements-dev.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(BUILD_STAMP)

test: install
	$(PY) -m pytest python_tests -q

demo: install
	$(PY) benchmarks/demo_zoo.py

bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_emms.py

# nvcc -Werror on every kernel, then a full EMMS_WITH_CUDA=ON build against the CUDA torch (no GPU needed).
cuda-check:
	bash scripts/check_cuda.sh

clean:
	rm -rf build dist $(BUILD_STAMP)
