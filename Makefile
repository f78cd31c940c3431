# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build from local disk here; on a CUDA machine set TORCH="torch" (or a CUDA wheel spec).
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench sample-data clean prefect-up prefect-down

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/inspect-core demo --config configs/demo.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

test-all: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/training_throughput.py
	$(PY) benchmarks/scoring_throughput.py
	$(PY) benchmarks/store_throughput.py
	$(PY) benchmarks/onnx_scoring.py

# Local Prefect server (127.0.0.1:4200, settings in prefect.toml) serving the flows/ deployments; logs in runs/prefect/.
prefect-up: $(STAMP)
	VENV=$(VENV) scripts/prefect_up.sh

prefect-down:
	scripts/prefect_down.sh

# Regenerate the committed sample set (deterministic: same seed, same files).
sample-data: $(STAMP)
	rm -rf sample_data/fabric_voc
	$(VENV)/bin/inspect-core dataset synth --out sample_data/fabric_voc --count 48 --seed 7 --size 384

clean:
	rm -rf runs .pytest_cache .hypothesis
