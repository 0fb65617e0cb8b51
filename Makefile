# The README's two commands. Each creates .venv with plain pip on a fresh machine.
#   make demo   - synthetic slices from the bundled demo checkpoint (outputs/demo)
#   make test   - lint and run the test suite (CI runs this)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch==2.13.0 is the CPU wheel these machines carry; without the pin pip pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed
# One pytest worker per core (pytest-xdist); each uses one torch thread (tests/conftest.py).
TEST_WORKERS ?= 2

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)" -e ".[dev,lidc,train]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lung_diffusers.demo --output outputs/demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache outputs
