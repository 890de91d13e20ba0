# First-run contract: `make demo` and `make test` each do all setup on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
VLLM_STAMP := $(VENV)/.vllm-stamp
# torch is pinned to the CPU wheel and installed first; the constraint keeps every later
# resolver step from replacing it with a multi-GB CUDA build.
TORCH  := torch==2.13.0
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP) $(VLLM_STAMP)

$(STAMP): pyproject.toml setup.py Makefile constraints.txt
	# Debian's chromium for the report's browser tests (playwright drives it; it downloads no browser)
	command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/harness assets pull
	touch $(STAMP)

# vLLM's CPU build for `--engine vllm` and its tests (removes the CUDA-linked extras it pulls in)
$(VLLM_STAMP): $(STAMP) ci/install-vllm.sh constraints.txt
	bash ci/install-vllm.sh $(VENV)
	touch $(VLLM_STAMP)

test: setup
	$(BIN)/python -m pytest -q --timeout=900

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" --timeout=600

# The whole story on the embedded model: a disjoint SQuAD train/eval split (by context),
# LoRA training, leak check, squad-qa on held-out questions, refusals and JSON extraction, HellaSwag and ARC-Easy forgetting checks, paired statistics,
# gate, report.
DEMO := reports/demo
demo: setup
	$(BIN)/python -m harness.train.demo_data --out $(DEMO)/data
	$(BIN)/harness ab smollm2-135m --train $(DEMO)/data/train.jsonl --config $(DEMO)/data/train.yaml \
		--suite $(DEMO)/data/squad-qa-heldout --suite refusals --suite json-extract \
		--bench hellaswag,arc_easy --limit 64 --limit-per-subject 100 \
		--policy ci/demo-gate.yaml --out $(DEMO) || [ $$? -eq 1 ]
	@echo "report: $(DEMO)/report.html"

bench: setup
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/forgetting.py
	$(BIN)/python bench/leaks.py --size-mb 200
	$(BIN)/python bench/vllm_engine.py

clean:
	rm -rf $(VENV) .pytest_cache
