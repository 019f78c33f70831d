# newsmon: `make demo` and `make test` work on a fresh clone (Python 3.11+ and pip, nothing else).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench bench-scale bench-faults clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/newsmon demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --max-worker-restart 0

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python bench/dedup_bench.py --quick
	$(BIN)/python bench/alerts_bench.py
	$(BIN)/python bench/ingest_bench.py

bench-scale: $(STAMP)   # a million synthetic articles through `newsmon import`, then runs against them (~30 min)
	$(BIN)/python bench/scale_bench.py

bench-faults: $(STAMP)   # 50 seeded kill -9 trials of a 200-article cycle, each followed by a completing run (~30 min)
	$(BIN)/python bench/fault_bench.py

clean:
	rm -rf $(VENV) newsmon-demo.lake newsmon-demo.toml .newsmon-demo .pytest_cache .bench-cache .hypothesis
