# The two commands a newcomer needs:  make demo  (run the main job)  and  make test.
# Both create .venv on first use (scripts/bootstrap.sh installs ".[all,dev]": every extra,
# the W&B, MLflow, Lightning and torchmetrics integrations included, plus the test, lint and
# packaging tools) and reinstall when pyproject changes.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench dist clean

demo: $(STAMP)
	$(BIN)/neuralcollapse train

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_spread_frame.py

# A wheel and an sdist in dist/ (offline: the build backend comes from .venv). Install the
# wheel anywhere with: pip install dist/neuralcollapse-<version>-py3-none-any.whl
dist: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir dist .

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(VENV) $(PYTHON)
	@touch $@

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
