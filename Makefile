# Every target sets itself up: a fresh clone needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# xds-protos ships its own, older copy of opentelemetry/proto/*: reinstall the real one
	# last, or the OTLP exporter fails to import, depending on pip's install order.
	$(BIN)/pip install --quiet --force-reinstall --no-deps opentelemetry-proto
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/extauthz demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/ruff check extauthz tests bench compose/ci setup.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check extauthz tests bench compose/ci setup.py
	$(BIN)/ruff format --check extauthz tests bench compose/ci setup.py

format: $(STAMP)
	$(BIN)/ruff format extauthz tests bench compose/ci setup.py
	$(BIN)/ruff check --fix extauthz tests bench compose/ci setup.py

bench: $(STAMP)
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
