# The two commands a newcomer needs:  make demo  (run the main job)  and  make test.
# Both create .venv on first use (scripts/bootstrap.sh installs ".[all,dev]": every extra,
# the W&B, MLflow, Lightning and torchmetrics integrations included, plus the test, lint and
# packaging tools) and reinstall when pyproject changes.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench dist clean chromium

demo: $(STAMP)
	$(BIN)/neuralcollapse train

test: $(STAMP)
	$(BIN)/python -m pytest -n auto

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_spread_frame.py

# A wheel and an sdist in dist/ (offline: the build backend comes from .venv). Install the
# wheel anywhere with: pip install dist/neuralcollapse-<version>-py3-none-any.whl
dist: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir dist .

# Headless Chromium for the report's browser test (tests/test_report.py), which skips with
# its reason when there is none. Opt-in and separate from `make test`, which installs
# nothing: this changes the system (apt-get, as root), so it prints what it runs.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: already installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: running apt-get update && apt-get install -y chromium"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium: apt-get failed; the browser test will skip"; \
	else \
		echo "chromium: not installed (needs root and apt-get); the browser test will skip"; \
	fi

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh $(VENV) $(PYTHON)
	@touch $@

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
