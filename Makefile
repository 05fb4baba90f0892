# mbpo_ros: two commands set everything up on a fresh machine.
#   make demo   - create .venv, install everything, run the main job on the digital twin
#   make test   - same set-up, then lint and the whole test suite
#   make bench  - the benchmarks of docs/benchmarks.md
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

.PHONY: setup demo test test-fast test-long lint bench clean

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
	$(PY) -m pytest -ra -m "not long" test

test-fast: setup lint
	$(PY) -m pytest -ra -m "not slow and not long" test

# what make test leaves out for time: the `long` tests (the 60-kill variant, the InvertedPendulum learning
# test) and the property tests with Hypothesis's `long` profile (test/conftest.py): many more examples, new each run
test-long: setup lint
	$(PY) -m pytest -ra -m long test
	MBPO_HYPOTHESIS_PROFILE=long $(PY) -m pytest -ra test/test_control_properties.py

# The benchmarks docs/benchmarks.md reports (minutes each; niced so a shared machine stays usable).
# benchmarks/mbrl_lib_compare.py needs an mbrl-lib venv of its own: see its docstring.
bench: setup
	nice -n 10 $(PY) benchmarks/core_throughput.py
	nice -n 10 $(PY) benchmarks/io_throughput.py
	nice -n 10 $(PY) benchmarks/twin_speed.py
	nice -n 10 $(PY) benchmarks/control_loop.py

clean:
	rm -rf build install log .pytest_cache
