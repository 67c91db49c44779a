# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# On a CPU machine torch is pinned to the local CPU build; GPU users: `make install TORCH_SPEC=torch`
# after installing their CUDA build, or set TORCH_SPEC to the build they want.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo reproduce reproduce-v2 test test-all lint bench clean

# Quiet: one line before and one after; pip speaks only for an error or a real warning.
$(BIN)/icl-stl-train: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 1; }
	@echo "installing into $(VENV): $(TORCH_SPEC), then icl-stl (editable) at constraints.txt's versions"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	@$(BIN)/pip install --quiet -c constraints.txt -e ".[test,launchers]"
	@touch $@
	@echo "installed: the entry points are in $(BIN)/ (e.g. $(BIN)/icl-stl-train --help); or 'source $(BIN)/activate' first"

install: $(BIN)/icl-stl-train

demo: install
	$(BIN)/python scripts/demo.py

# The CPU reproduction (scripts/reproduce.py, presets conf/experiment/reproduce/), eight parts:
# PART=collapse|stability|decay|augmentation|reference|filters|schedules|pools, or all (default);
# a killed part resumes with the same command. Results: outputs/reproduce/REPORT.md.
PART ?= all
reproduce: install
	$(BIN)/python scripts/reproduce.py --part $(PART)

# The confirmatory reproduction (version-2 rules, scripts/reproduce_v2.py): one part of at most
# an hour per call, resumable; ARGS passes options (e.g. ARGS=--plan, ARGS="--parts 99").
reproduce-v2: install
	$(BIN)/python scripts/reproduce_v2.py $(ARGS)

# One pytest-xdist worker per core (each runs torch on one thread, tests/conftest.py); a test
# file stays on one worker, so its module fixtures are made once. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= auto
test: install
	$(BIN)/ruff check icl_stl tests scripts
	$(BIN)/python -m pytest -q -x -n $(TEST_WORKERS) --dist loadfile --timeout=900 --durations=25

test-all: install
	$(BIN)/python -m pytest -q -m "" --timeout=3600

lint: install
	$(BIN)/ruff check icl_stl tests scripts

bench: install
	$(BIN)/icl-stl-bench

clean:  # checkpoints too: after a code change they would be resumed (README, Checkpoints)
	rm -rf $(VENV) outputs multirun wandb
	find checkpoints -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
