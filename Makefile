# Quick start on a fresh clone:  make smoke  &&  make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
RESULTS ?= results
# Figures go to <results>/plots unless PLOTS names another folder.
PLOTS ?=
PLOTS_ARG = $(if $(PLOTS),--plots $(PLOTS))
RUN_ARGS ?=

.PHONY: setup smoke test test-slow test-slurm check-docs figures report bench-speed clean clean-smoke clean-cache \
        table-cifar10 table-cifar100 table-tinyimagenet
.PHONY: smoke-real clean-smoke-real

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
	$(PY) -m bench report --results $(RESULTS)/smoke $(if $(PLOTS),--plots $(PLOTS)/smoke)

# The tests are split so that the default stays under 5 minutes on 2 cores: `make test` deselects the
# ones marked slow (end-to-end grids in subprocesses, the kill -9 fault suite, byte-identical figures,
# each over about 5 s; together longer than all the rest), `make test-slow` runs just those. CI runs
# both (.ci/run), so every test runs somewhere. A later -m on the command line replaces pyproject's.
test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m 'slow and not slurm'

# The commands quoted in README.md and docs/*.md that write committed tables, rerun on a copy of the
# repository: each committed table, claims file and report must come out byte-identical (no training).
check-docs: $(STAMP)
	$(PY) scripts/check_docs.py

# The real-data smoke (CI): every registered method, one seed, 90% and 98% overall, on slices of
# real CIFAR-10, CIFAR-100 and Tiny ImageNet (64 px) that $(SHARED_DATA)/materialize.py writes into
# $(REAL_DATA) (ignored); preset smoke-real. Fails on a failed cell; lists the unreachable ones and
# why. Where $(SHARED_DATA) is absent (a user's clone) it says so in one line and succeeds.
SHARED_DATA ?= ../shared/data
REAL_DATA ?= .realdata
smoke-real: $(if $(wildcard $(SHARED_DATA)/materialize.py),$(STAMP))
	@if [ ! -f "$(SHARED_DATA)/materialize.py" ]; then \
	  echo "smoke-real skipped: no real data at $(SHARED_DATA) (the project's CI keeps it beside the clone)"; \
	  exit 0; fi; \
	set -e; \
	if [ ! -f "$(REAL_DATA)/.materialized" ]; then \
	  $(PY) $(SHARED_DATA)/materialize.py $(REAL_DATA) --cifar10-exact --tinyimagenet-per-class 1 >/dev/null; \
	  touch "$(REAL_DATA)/.materialized"; fi; \
	$(PY) -m bench run smoke-real --data-dir $(REAL_DATA) --results $(RESULTS)/smoke-real $(RUN_ARGS)

clean-smoke-real:
	rm -rf $(RESULTS)/smoke-real

# --executor slurm against a real single-node SLURM cluster that the tests start and stop (root;
# installs slurm-wlm, slurmdbd and mariadb-server with apt-get when missing). About 2 minutes.
test-slurm: $(STAMP)
	$(PY) -m pytest -m slurm tests/test_slurm.py

# Run (resuming) a dataset's paper grid, then render its tables and figures. The dry run first prints
# the cells and the cost preview (hours on the table's GPU and here); on a machine without a GPU the run
# then refuses a grid estimated at more than 100 CPU-hours: RUN_ARGS=--allow-cpu starts it anyway.
# (A static pattern rule: make applies no plain pattern rule to a .PHONY target, and did nothing.)
table-cifar10 table-cifar100 table-tinyimagenet: table-%: $(STAMP)
	$(PY) -m bench run $*-paper --results $(RESULTS) --data-dir $(DATA_DIR) --dry-run $(RUN_ARGS)
	$(PY) -m bench run $*-paper --results $(RESULTS) --data-dir $(DATA_DIR) $(RUN_ARGS)
	$(PY) -m bench collect --results $(RESULTS)
	$(PY) -m bench table --dataset $* --results $(RESULTS)
	$(PY) -m bench plot --dataset $* --results $(RESULTS) $(PLOTS_ARG)

# Rerender every table and figure of one results folder from its records (no training), e.g.
# make figures RESULTS=results/h100-small-cifar10; a folder without records fails, naming those with some.
figures: $(STAMP)
	$(PY) -m bench table --results $(RESULTS)
	$(PY) -m bench plot --results $(RESULTS) $(PLOTS_ARG)

report: $(STAMP)
	$(PY) -m bench report --results $(RESULTS) $(PLOTS_ARG)

# Training throughput on this machine (python -m bench speed): the engine with compile off and on,
# the baselines' official DataLoader loop, concurrent cells; prints the rows (SPEED_OUT=docs/performance.md
# appends them there too).
# CPU default: resnet_small on 2,048 CIFAR-10 images, no compile (minutes to compile on a CPU).
# On a GPU: make bench-speed SPEED_ARGS= (ResNet-18, full CIFAR-10, cifar10-paper recipe), or
# scripts/gpu-check.sh for every GPU measurement in one call.
SPEED_ARGS ?= --set model.arch=resnet_small --set dataset.train_limit=2048 --set retrain.batch_size=128 \
              --only official-0,engine,official-2,cells-1,cells-2
bench-speed: $(STAMP)
	$(PY) -m bench speed --data-dir $(DATA_DIR) $(SPEED_ARGS) $(if $(SPEED_OUT),--output $(SPEED_OUT))

clean-smoke:
	rm -rf $(RESULTS)/smoke plots/smoke $(if $(PLOTS),$(PLOTS)/smoke)

# Removes build leftovers and the smoke grid. Recorded results and trained checkpoints are kept.
clean: clean-smoke
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Removes cached checkpoints (dense models, teachers, fine-tuned students): they retrain on demand.
clean-cache:
	rm -rf $(RESULTS)/cache
