# Two commands set up a fresh machine: `make demo` and `make test` (README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: demo test bench lint install clean

# Re-runs are instant: the stamp is newer than pyproject.toml unless the dependencies changed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel on this machine; unpinned torch pulls CUDA builds.
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	# dev = the service extra (Ray, FastAPI, SQLAlchemy, ...: what demo and test run) + the test tools.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

DEMO_DATA := data
# The quickstart sweep on SQLite + a local Ray, then its leaderboard. A second run reuses every result.
demo: $(STAMP)
	test -f $(DEMO_DATA)/listops-1000/basic_train.tsv || $(BIN)/ssmbench data generate listops --data-dir $(DEMO_DATA) \
		--n-train 2000 --n-val 200 --n-test 200 --min-len 20 --max-len 128
	SSMBENCH_DATA_DIR=$(DEMO_DATA) $(BIN)/ssmbench run examples/quickstart.yaml --db sqlite:///$(DEMO_DATA)/demo.db

test: $(STAMP)
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -n 2 --dist loadfile --timeout 900 tests

bench: $(STAMP)
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
