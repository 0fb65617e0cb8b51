# The README's two commands. Each creates .venv with plain pip on a fresh machine.
#   make demo   - synthetic slices from the bundled demo checkpoint (outputs/demo)
#   make test   - lint and run the test suite (CI runs this; the Space's browser tests need chromium)
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

.PHONY: install demo test lint clean space space-bundle evaluate evaluate-samplers evaluate-256

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)" -e ".[dev,lidc,train,space,eval,fid]"
	touch $(STAMP)

# --overwrite: a second `make demo` replaces the first one's files (those its manifest in outputs/demo lists) and
# nothing else; a non-empty outputs/demo without that manifest is refused.
demo: $(STAMP)
	$(PY) -m lung_diffusers.demo --output outputs/demo --overwrite

# The README's 64-px evaluation tables: the recipe on the three bundled LIDC-IDRI scans (LIDC-IDRI-0001 held out,
# as both demo checkpoints hold it out), then `lung-diffusers evaluate` with FID (about 25 min on 2 CPU cores).
# `make evaluate-samplers` adds the sampler study to the same report (about 50 min more on 2 idle CPU cores: DDPM
# 1000 alone is about 41 s per image, 22 min). Interrupted? Run it again: the dataset and the evaluation's cache resume.
EVAL_DATA ?= outputs/luna16-mini-all
EVAL_OUTPUT ?= outputs/evaluation-64
EVALUATE = $(PY) -m lung_diffusers.cli evaluate --pipeline pipelines/lung-sdm-64 --dataset $(EVAL_DATA) \
	--output $(EVAL_OUTPUT) --fid --batch-size 32 --overwrite
evaluate: $(STAMP)
	[ -f $(EVAL_DATA)/README.md ] || $(PY) dataset_scripts/prepare_luna16.py --luna16-root ../shared/data/lidc-mini \
		--output $(EVAL_DATA) --healthy-stride 1 --nodule-slices all
	$(EVALUATE)

evaluate-samplers: evaluate
	$(EVALUATE) --sampler-study

# The README's 256-px fidelity table (issue 17's goals): both bundled stages on 24 held-out masks and on 8 held-out
# masks with placed 4/6/10/20-mm nodules (3 positions, seeds 0 and 1), at the default settings (DPM-Solver++ 25 +
# 25 at strength 0.4, guidance 1); about 45 min on 2 idle CPU cores. Interrupted? Run it again: it resumes.
EVAL_256_OUTPUT ?= outputs/fidelity-cascade-256
evaluate-256: $(STAMP)
	[ -f $(EVAL_DATA)/README.md ] || $(PY) dataset_scripts/prepare_luna16.py --luna16-root ../shared/data/lidc-mini \
		--output $(EVAL_DATA) --healthy-stride 1 --nodule-slices all
	$(PY) training/evaluate_fidelity.py --pipeline pipelines/lung-sdm-64 --upscaler pipelines/lung-sdm-upscaler-256 \
		--dataset_name $(EVAL_DATA) --output $(EVAL_256_OUTPUT) --max_masks 24 --seeds 0 --batch_size 8 --overwrite

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache outputs

# The Gradio Space (spaces/). `make space` serves it on http://127.0.0.1:7860; `make space-bundle` writes
# dist/space, a folder to upload as a Hugging Face Space.
# With a Hub model: make space HF_HUB_OFFLINE=0 LUNG_SPACE_PIPELINE=you/your-lung-sdm
space: $(STAMP)
	$(PY) spaces/app.py

space-bundle:
	$(PYTHON) spaces/make_bundle.py --output dist/space
