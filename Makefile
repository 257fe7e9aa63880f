# `make test` and `make demo` work on a fresh machine: they create .venv, install torch 2.13.0 first (an unpinned
# torch would pull a multi-GB CUDA build), then this package with the exact versions we test (constraints.txt).

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_ENV := HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

.PHONY: install test demo lint clean wordnet

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,examples]"
	touch $(STAMP)

install: $(STAMP)

# WUPS needs WordNet data: Debian's wordnet-base, installed when this machine allows it (root + apt); without it the
# WUPS tests skip with that reason.
wordnet:
	@if [ ! -f /usr/share/wordnet/data.noun ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base) >/dev/null 2>&1 \
		|| echo "wordnet-base could not be installed: WUPS tests will be skipped"; fi

test: $(STAMP) wordnet
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	HF_HOME=$$tmp/hf MCG_CACHE=$$tmp/mcg $(TEST_ENV) $(PY) -m pytest -q -p no:cacheprovider tests

# The main job with no arguments: generate (once, cached) the synthetic long-video QA set, train the tiny preset on
# it, evaluate on the test split, and leave a Hub-ready folder with metrics.json in outputs/demo/.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_EVALUATE_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
	$(PY) examples/run_videoqa.py

lint: $(STAMP)
	$(VENV)/bin/ruff check modeling_mcg examples tests benchmarks
	$(VENV)/bin/ruff format --check modeling_mcg examples tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
