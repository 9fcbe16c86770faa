# causalscene — `make demo` runs the main job, `make test` runs the checks (ruff, mypy, pytest).
# The virtual environment lives in .venv unless VENV=... says otherwise (CI keeps one per
# pyproject.toml hash under ~/.cache, see .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build of these machines (DESIGN.md, Install). Override on other platforms, e.g.
#   make install TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.14.1
DEPS_STAMP := $(VENV)/.causalscene-deps
SEED ?= 0
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test lint unit bench clean browser

# Dependencies are installed once per pyproject.toml; the package itself is (re)linked in
# editable mode whenever the environment points at another checkout.
install: $(DEPS_STAMP)
	@$(PY) -c "import causalscene, os, sys; sys.exit(0 if os.path.realpath(causalscene.__file__).startswith(os.path.realpath('$(CURDIR)') + os.sep) else 1)" 2>/dev/null \
	  || $(PY) -m pip install -q --no-deps --no-build-isolation -e .

$(DEPS_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $(DEPS_STAMP)

demo: install
	$(VENV)/bin/causalscene demo --out demo_out --seed $(SEED) $(DEMO_ARGS)

lint: install
	$(VENV)/bin/ruff check causalscene procgen tests benchmarks
	$(VENV)/bin/ruff format --check causalscene procgen tests benchmarks
	$(VENV)/bin/mypy

# The report test renders the HTML page in headless Chromium: Debian's package, installed here
# when it is missing and this is root on a machine with apt (elsewhere: install chromium yourself).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "warning: chromium is missing and could not be installed; the report test will fail" >&2

unit: install browser
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint unit

clean:
	rm -rf demo_out reproduce_out .pytest_cache build *.egg-info
