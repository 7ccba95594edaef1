# `make demo` and `make test` set up everything they need themselves (.venv, pinned deps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format clean reproduce-mini mutation mutation-recheck

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and exactly pinned: the CPU wheel on local disk, never a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/distilxlsr demo --out demo_out

# Replication v3: the label-free teachers (T1's candidates, T2, T-EN), their dev gates and T1's
# choice, then every student, the test evaluation, the fine-tuning and the report
# (docs/replication.md; its records in results/replication-v3/). Every step resumes where it
# stopped; teachers that fail their gate are run and the report says so.
reproduce-mini: setup
	$(BIN)/python experiments/teacher_levers.py --families T2,T-EN
	$(BIN)/python experiments/reproduce_mini.py --allow-failed-gate

# The whole suite, with the 15 slowest tests named at the end (CI prints them too).
test: setup
	$(BIN)/python -m pytest -q --durations=15 tests

# Everything but the end-to-end runs marked `slow` (about a minute or two less).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; not part of `make test`):
# a fresh run in mutants/, then the share of mutants killed per module and the survivors. One
# torch thread per test process: spinning OpenMP threads would eat the CPU-time limit per mutant.
MUTATION_JOBS ?= 2
mutation: setup
	rm -rf mutants
	OMP_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run --max-children $(MUTATION_JOBS)
	$(BIN)/python tools/mutation_report.py --min 85

# After new tests: re-test only the mutants the last run left (survived, no tests, timeout).
mutation-recheck: setup
	nice -n 10 $(BIN)/python tools/mutation_recheck.py --jobs $(MUTATION_JOBS)
	$(BIN)/python tools/mutation_report.py --min 85

lint: setup
	$(BIN)/ruff check src tests benchmarks tools experiments
	$(BIN)/ruff format --check src tests benchmarks tools experiments

format: setup
	$(BIN)/ruff format src tests benchmarks tools experiments
	$(BIN)/ruff check --fix src tests benchmarks tools experiments

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache mutants
