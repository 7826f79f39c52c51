# Quick start on a fresh clone:  make smoke  &&  make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
RESULTS ?= results
PLOTS ?= plots
RUN_ARGS ?=

.PHONY: setup smoke test test-slurm figures report bench-speed clean clean-smoke clean-cache \
        table-cifar10 table-cifar100 table-tinyimagenet

setup: $(STAMP)

# Creates .venv and installs the project (torch, torchvision, pandas, ...) into it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The smoke grid on the CPU (synthetic data, tiny ResNet), then its tables, figures and report.
smoke: $(STAMP)
	$(PY) -m bench run smoke --results $(RESULTS)/smoke $(RUN_ARGS)
	$(PY) -m bench collect --results $(RESULTS)/smoke
	$(PY) -m bench report --results $(RESULTS)/smoke --plots $(PLOTS)/smoke

test: $(STAMP)
	$(PY) -m pytest

# --executor slurm against a real single-node SLURM cluster that the tests start and stop (root;
# installs slurm-wlm, slurmdbd and mariadb-server with apt-get when missing). About 2 minutes.
test-slurm: $(STAMP)
	$(PY) -m pytest -m slurm tests/test_slurm.py

# Run (resuming) a dataset's paper grid, then render its tables and figures.
table-%: $(STAMP)
	$(PY) -m bench run $*-paper --results $(RESULTS) --data-dir $(DATA_DIR) $(RUN_ARGS)
	$(PY) -m bench collect --results $(RESULTS)
	$(PY) -m bench table --dataset $* --results $(RESULTS)
	$(PY) -m bench plot --dataset $* --results $(RESULTS) --plots $(PLOTS)

# Rerender every table and figure from stored results (no training).
figures: $(STAMP)
	$(PY) -m bench table --results $(RESULTS)
	$(PY) -m bench plot --results $(RESULTS) --plots $(PLOTS)

report: $(STAMP)
	$(PY) -m bench report --results $(RESULTS) --plots $(PLOTS)

# Engine vs plain DataLoader throughput on this machine; appends a row to docs/performance.md.
# CPU default: a small CIFAR-10 subset. On a GPU: make bench-speed SPEED_ARGS="--arch resnet18"
SPEED_ARGS ?= --arch resnet_small --train-limit 2048 --batch-size 128 --workers 2
bench-speed: $(STAMP)
	$(PY) -m bench speed --dataset cifar10 --data-dir $(DATA_DIR) $(SPEED_ARGS)

clean-smoke:
	rm -rf $(RESULTS)/smoke $(PLOTS)/smoke

# Removes build leftovers and the smoke grid. Recorded results and trained checkpoints are kept.
clean: clean-smoke
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Removes cached checkpoints (dense models, teachers, fine-tuned students): they retrain on demand.
clean-cache:
	rm -rf $(RESULTS)/cache
