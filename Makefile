# Neural machine translation with an encoder-decoder Transformer (TensorFlow/Keras + Hydra).
# `make help` lists the targets. Every user-facing target installs into .venv on first use.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GPU ?= 0
comma := ,
EXTRAS := dev$(if $(filter 1,$(GPU)),$(comma)gpu,)
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu,)

# Make variables mapped onto Hydra overrides; ARGS passes raw overrides through.
EXP ?=
RUN ?=
TEXT ?=
ARGS ?=
VERBOSE ?=
hydra_exp := $(if $(EXP),experiment=$(EXP),)
hydra_run := $(if $(RUN),run_dir=$(RUN),)
hydra_export := $(if $(format),format=$(format),) $(if $(quantization),quantization=$(quantization),)
# TEXT reaches the config through the environment, so commas, quotes and '=' need no escaping.
export TRANSLATOR_TEXT := $(TEXT)
# VERBOSE=1 keeps TensorFlow's native start-up logs, which the scripts otherwise filter out.
export TRANSLATOR_VERBOSE := $(VERBOSE)

.DEFAULT_GOAL := help

.PHONY: help setup chromium test test-fast lint format prepare train train-workers translate score backtranslate evaluate plot export serve bench bench-train bench-translate bench-quality bench-serve bench-paragraphs bench-constraints bench-segmenters bench-data clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	rm -f $(VENV)/.installed*
	touch $@

setup: $(STAMP) ## Create .venv and install the project (GPU=1 adds the CUDA build of TensorFlow)

# The attention-viewer test opens the HTML page in headless Chromium (Debian's package).
chromium:
	@{ command -v chromium || command -v chromium-browser; } >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: $(STAMP) chromium ## Run the test suite
	$(PY) -m pytest -q --durations=20

test-fast: $(STAMP) ## Run the tests not marked slow (no training)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP) ## Check style with ruff
	$(VENV)/bin/ruff check translator scripts tests bench
	$(VENV)/bin/ruff format --check translator scripts tests bench

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff check --fix translator scripts tests bench
	$(VENV)/bin/ruff format translator scripts tests bench

prepare: $(STAMP) ## Prepare the training data once (vocabularies, shards); `make train` does it when needed
	$(PY) scripts/prepare.py $(hydra_exp) $(ARGS)

train: $(STAMP) ## Train (default: Spanish->English on the shipped Tatoeba corpus, 30 min); EXP=multi30k_en_de
	$(PY) scripts/train.py $(hydra_exp) $(ARGS)

train-workers: $(STAMP) ## Train on N worker processes on this machine (multi-worker, N=2); EXP=..., ARGS=...
	$(PY) scripts/train_workers.py workers=$(or $(N),2) $(hydra_exp) $(ARGS)

translate: $(STAMP) ## Translate TEXT="..." (or ARGS="input=F output=G") with the latest run, or RUN=checkpoints/<run>
	$(PY) scripts/translate.py $(hydra_run) $(ARGS)

score: $(STAMP) ## Score translations: ARGS="source=F target=G" (log-probability per line) [RUN=checkpoints/<run>]
	$(PY) scripts/score.py $(hydra_run) $(ARGS)

backtranslate: $(STAMP) ## Turn monolingual text into a corpus folder: RUN=<reverse run> ARGS="input=F output=DIR"
	$(PY) scripts/backtranslate.py $(hydra_run) $(ARGS)

evaluate: $(STAMP) ## Score BLEU/chrF on the run's test split (latest run, or RUN=checkpoints/<run>)
	$(PY) scripts/evaluate.py $(hydra_run) $(ARGS)

plot: $(STAMP) ## Plot attention for one sentence: TEXT="..." [RUN=checkpoints/<run>]
	$(PY) scripts/plot_attention.py $(hydra_run) $(ARGS)

export: $(STAMP) ## Export a run as a SavedModel [RUN=checkpoints/<run>] [format=ctranslate2 [quantization=int8]]
	$(PY) scripts/export.py $(hydra_run) $(hydra_export) $(ARGS)

serve: $(STAMP) ## HTTP API and web page for a run on 127.0.0.1:8000 [RUN=checkpoints/<run>] [ARGS="port=8080"]
	$(PY) scripts/serve.py $(hydra_run) $(ARGS)

bench: $(STAMP) ## Every benchmark in one JSON report [RUN=checkpoints/<run>]
	$(PY) bench/bench_all.py $(hydra_run) $(ARGS)

bench-train: $(STAMP) ## Training throughput benchmark (prints JSON)
	$(PY) bench/bench_train.py $(ARGS)

bench-translate: $(STAMP) ## Translation throughput benchmark [RUN=checkpoints/<run>] (prints JSON)
	$(PY) bench/bench_translate.py $(hydra_run) $(ARGS)

bench-paragraphs: $(STAMP) ## Lines of k sentences translated whole vs segmented [RUN=checkpoints/<run>] (prints JSON)
	$(PY) bench/bench_paragraphs.py $(hydra_run) $(ARGS)

bench-constraints: $(STAMP) ## Terminology constraints: present?, BLEU and speed with vs without [RUN=checkpoints/<run>] (prints JSON)
	$(PY) bench/bench_constraints.py $(hydra_run) $(ARGS)

$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),bench]"
	touch $@

bench-segmenters: $(VENV)/.installed-bench ## Sentence segmenters compared on bench/data/segmentation (prints JSON)
	$(PY) bench/segmenters.py $(ARGS)

bench-serve: $(STAMP) ## The server under 1/8/32 concurrent clients [RUN=checkpoints/<run>] (prints JSON)
	$(PY) bench/bench_serve.py $(hydra_run) $(ARGS)

bench-data: $(STAMP) ## Streamed training data at 115 k, 1 M and 4 M generated pairs (prints JSON; ~1 h)
	$(PY) bench/bench_data.py $(ARGS)

bench-quality: $(STAMP) ## Train experiments at 10/20/40-minute budgets and score each (prints JSON; hours)
	$(PY) bench/bench_quality.py $(ARGS)

clean: ## Remove caches and prepared data (keeps .venv and checkpoints)
	rm -rf .pytest_cache .ruff_cache outputs multirun prepared
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
