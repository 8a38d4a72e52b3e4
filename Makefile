# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean paper docs

# `make paper`: Tanksale & Stauber (arXiv:2602.18890) reproduced beside ours at the paper preset (i = 9),
# resumable (rerun to continue); PAPER_ARGS overrides, e.g. a tiny check:
#   make paper PAPER_OUT=runs/paper_tiny PAPER_ARGS="--set lattice.index=2 --set 'dataset.U_values=[0.0,3.0,6.0]' --set 'dataset.paper_U_values=[0.0,3.0,6.0]' --keep runs/paper_tiny/kept --doc runs/paper_tiny/paper-reproduction.md"
# Small results are kept in results/paper (committed): a fresh clone restores them instead of training again.
PAPER_OUT ?= runs/paper
PAPER_ARGS ?=
# the blind store of our networks at i = 9 (another dataset seed: new crops, 6 new held-out U)
PAPER_BLIND ?= --blind-seed 1598071192 --blind-u 6
# the reference networks' seeds (30–60 min per network and seed on 2 CPU cores; the kept ones are restored):
# more with PAPER_REPRO="--repro-seeds 0,1,2"
PAPER_REPRO ?= --repro-seeds 0

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned through constraints.txt so that no CUDA build is ever pulled in
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/moireu demo --out runs/demo

paper: $(STAMP)
	$(BIN)/moireu paper --out $(PAPER_OUT) $(PAPER_BLIND) $(PAPER_REPRO) $(PAPER_ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/lint-imports --no-cache
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q

# `make docs`: the API reference built from the docstrings (docs/api → docs/api/_build/html/index.html);
# any Sphinx warning fails it (-W), so `make test` runs it
docs: $(STAMP)
	$(BIN)/sphinx-build -q -W --keep-going -b html docs/api docs/api/_build/html

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs docs/api/_build docs/api/_generated
