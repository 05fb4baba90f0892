# mbpo_ros: two commands set everything up on a fresh machine.
#   make demo   - create .venv, install everything, run the main job on the digital twin
#   make test   - same set-up, then lint and the whole test suite
# A GPU user picks their own torch build:  make test TORCH_SPEC="torch --index-url ..."

PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.mbpo-ros-setup
# The Jazzy wheels install the ament index under the venv prefix.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONUNBUFFERED := 1
# Every process the demo, the tests and the benchmarks start discovers ROS peers on this host only.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt setup.py package.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/mbpo-ros train

lint: setup
	$(VENV)/bin/ruff check mbpo_ros test benchmarks launch

test: setup lint
	$(PY) -m pytest -ra test

test-fast: setup lint
	$(PY) -m pytest -ra -m "not slow" test

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build install log .pytest_cache
