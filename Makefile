# make course | make lab | make test | make bench : each sets up .venv first (once).
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dsilab-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup course test test-quick lab bench browser-test binder-test clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build on this machine's disk, never a multi-GB CUDA download.
	$(PY) -m pip install -q -c constraints.txt "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (dsilab)" >/dev/null
	touch $@

course: setup
	$(PY) -m dsilab course run --fast

# Both test targets end with their own wall time (the figure README quotes), whatever pytest's exit status.
# Two workers (pytest-xdist): a test file runs whole on one worker, but each course notebook is a unit of its own
# (tests/conftest.py), so both workers take notebooks (the longest first, hence --no-loadscope-reorder) and then unit
# tests, one thread each, kernels included.
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder
test: setup
	@start=$$(date +%s); $(PY) -m pytest $(XDIST) -m "not install" --durations=25; rc=$$?; \
		echo "make test: $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

# The unit tests alone (no notebook executed, no training to convergence): the loop to run while changing the package.
test-quick: setup
	@start=$$(date +%s); $(PY) -m pytest $(XDIST) -m "not notebook and not slow and not install" --durations=10; rc=$$?; \
		echo "make test-quick: $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

# Every method in one table (dsilab/results/all-lab.json + .png, docs/benchmarks.md): `bench dsi` runs first (its result
# is deleted to measure everything afresh) and `bench all` reads it. `bench efficiency` has its own table. Only this
# target writes into dsilab/results and docs/ (--update-docs); any other `dsilab bench` writes under its --out.
# BEIR="path/to/cisi path/to/scifact" adds the baselines on BEIR-layout folders you downloaded (dsilab/results/baselines-NAME.json).
# The long ablations have their own commands: dsilab bench ann|augment|dgi [--collection synthetic] (see docs/benchmarks.md);
# `dsilab bench NAME --help` lists the options of each (e.g. --seeds, --jobs, --time-limit-s, --recipe FILE).
bench: setup
	rm -f dsilab/results/dsi-lab.json dsilab/results/efficiency-lab.json
	$(PY) -m dsilab bench baselines --collection lab --out dsilab/results --update-docs
	$(PY) -m dsilab bench dsi --collection lab --out dsilab/results --update-docs
	$(PY) -m dsilab bench all --collection lab --out dsilab/results --update-docs
	$(PY) -m dsilab bench efficiency --collection lab --out dsilab/results --update-docs
	for folder in $(BEIR); do $(PY) -m dsilab bench baselines --collection $$folder --out dsilab/results --update-docs; done

# Real-browser widget test: JupyterLab on 127.0.0.1 + Debian's headless Chromium via Playwright (no browser download).
SCREENSHOTS ?= build/browser
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser-test: setup
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(PY) -m pip install -q -c constraints.txt playwright
	DSILAB_BROWSER_TEST=1 DSILAB_CHROMIUM="$$(command -v chromium)" DSILAB_SCREENSHOTS=$(SCREENSHOTS) \
		$(PY) -m pytest -q -m browser tests/browser -p no:cacheprovider

# Binder's build in a fresh venv: binder/requirements.txt from the package index, binder/postBuild, then notebook 00
# (FAST) on that venv's kernel. Minutes (a real install), so not part of `make test`.
binder-test: setup
	@start=$$(date +%s); $(PY) -m pytest -q -m install tests/test_packaging.py -p no:cacheprovider; rc=$$?; \
		echo "make binder-test: $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

clean:
	rm -rf build .pytest_cache
