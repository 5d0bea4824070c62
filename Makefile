# The two commands a fresh machine needs: `make lab` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup lab examples test demo bench clean

setup:
	bash scripts/system-deps.sh
	bash scripts/setup.sh

## Launch the workbench: JupyterLab on notebooks/, opening the quickstart notebook.
lab: setup examples demo
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/01_quickstart.ipynb $(LAB_ARGS)

## Run the example flow end to end (starts its two model services on loopback).
demo: setup
	$(PY) -m jupyter_flow_examples.services

## Make the example models (small ones, trained on the spot) and sample contracts.
examples: setup
	$(PY) -m jupyter_flow_examples.models --out notebooks/models
	$(PY) -m jupyter_flow_examples.samples --out notebooks/samples

## Run every test.
test: setup
	bash scripts/test.sh $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/engine_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts
