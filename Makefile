# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pmlseg-installed
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pmlseg demo $(DEMO_DIR)

# As root, the system tools the tests use are installed first (.ci/system_deps.sh); under CI=true a
# one-node SLURM cluster is started too (.ci/start_slurm.sh). Otherwise tests whose tool or data is
# missing skip, and pytest's last lines say which and how to get them (CI=true fails them instead).
test: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then bash .ci/system_deps.sh; fi
	@case "$${CI:-}" in 1|true|yes) if [ "$$(id -u)" = 0 ]; then bash .ci/start_slurm.sh; fi;; esac
	$(BIN)/python -m pytest -v --durations=25 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
