# Everything runs from a project-local virtual environment, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Triton's interpreter must be chosen before triton is first imported: kernels run on CPU in tests.
export TRITON_INTERPRET := 1

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so nothing later resolves to a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

demo: $(STAMP)
	TRITON_INTERPRET= $(BIN)/attnkit train --model gpt --flavor demo --out runs/demo
	TRITON_INTERPRET= $(BIN)/attnkit sample --run runs/demo --prompt "The " --max-new-tokens 300

bench: $(STAMP)
	$(BIN)/attnkit bench-kernels --device cpu --quick

clean:
	rm -rf $(VENV) runs .pytest_cache
