# causalscene — `make demo` runs the main job, `make test` runs the checks.
# The virtual environment lives in .venv unless VENV=... says otherwise.
VENV ?= .venv
PY := $(VENV)/bin/python
# A matching torch/torchvision pair (see DESIGN.md, Install). Override on other platforms.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.causalscene-installed
SEED ?= 0
DEMO_ARGS ?=

.PHONY: install demo test lint unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/causalscene demo --out demo_out --seed $(SEED) $(DEMO_ARGS)

lint: install
	$(VENV)/bin/ruff check causalscene procgen tests benchmarks
	$(VENV)/bin/ruff format --check causalscene procgen tests benchmarks

unit: install
	$(PY) -m pytest -q -p no:cacheprovider

test: lint unit

clean:
	rm -rf demo_out .pytest_cache build *.egg-info
