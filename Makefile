# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing steelscan into $(VENV) (first run only: torch comes from the local wheel store)"
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v "Location '.*' is ignored" || true; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs out
