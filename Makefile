# make course | make lab | make test | make bench : each sets up .venv first (once).
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dsilab-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup course test lab bench clean

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

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) -m dsilab bench baselines --collection lab
	if [ -d ../shared/data/cisi ]; then $(PY) -m dsilab bench baselines --collection ../shared/data/cisi; fi

clean:
	rm -rf build .pytest_cache
