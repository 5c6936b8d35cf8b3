# Fresh machine: `make mnist` (install, get MNIST, train 784-600-10) and `make test`.
# BSTDG_DATA=/path/to/datasets make mnist   uses data that is already somewhere.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BSTDG  := $(VENV)/bin/bstdg
STAMP  := $(VENV)/.installed

# bstdg reads BSTDG_DATA itself; export it also when given as `make mnist BSTDG_DATA=...`.
ifdef BSTDG_DATA
export BSTDG_DATA
endif

.PHONY: install hdl-tools test mnist bench clean

install: $(STAMP)

# Reinstalled only when the package metadata changes (the install is editable). torch comes
# first and pinned (the `baselines` extra: BPTT baselines of `bstdg compare` and their tests;
# the CPU wheel, where an unpinned torch would pull GBs of CUDA packages).
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test,baselines,plot,sweep]'
	touch $@

# The HDL simulators of tests/test_hdl.py (the Verilog core in hardware/): installed with
# apt-get when missing and when root or password-less sudo is available; else those tests
# are skipped and say why.
HDL_TOOLS := iverilog verilator
hdl-tools:
	@missing=; for t in $(HDL_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "hdl-tools: missing$$missing and not root: the HDL tests will be skipped"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then echo "hdl-tools: no apt-get to install$$missing"; exit 0; fi; \
	$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing \
	  || echo "hdl-tools: could not install$$missing: the HDL tests will be skipped"

# The linters first (ruff: pyproject.toml; lint-imports: the layers contract in setup.cfg),
# then the tests. pytest exits with 5 when it collects no tests: that is not a failure.
test: install hdl-tools
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q || [ $$? -eq 5 ]

mnist: install
	$(BSTDG) data fetch mnist
	$(BSTDG) train --dataset mnist --hidden 600 --out runs/mnist --force

bench: install
	$(PY) benchmarks/bench_inference.py

# Removes the environment and build/cache files; never runs/ or datasets/.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
	find . \( -name __pycache__ -o -name '*.nbi' -o -name '*.nbc' \) -prune -exec rm -rf {} +
