# Everything runs from a project-local virtual environment, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A second environment for the compatibility run: .venv's packages, except triton at the oldest supported release.
COMPAT_TRITON := 3.6.0
COMPAT        := .venv-triton36
COMPAT_STAMP  := $(COMPAT)/.installed

# Triton's interpreter must be chosen before triton is first imported: kernels run on CPU in tests.
export TRITON_INTERPRET := 1

.PHONY: install system-deps lint test test-compat demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned, so nothing later resolves to a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[zoo,hf,test]'
	touch $(STAMP)

# Its site-packages come first; a .pth adds .venv's after them (site.addsitedir, so .venv's own .pth files,
# attnkit's editable install among them, work too). Only triton differs between the two.
$(COMPAT_STAMP): $(STAMP)
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -c "import pathlib, site, sys; \
	  main = pathlib.Path('$(VENV)/lib/python%d.%d/site-packages' % sys.version_info[:2]).resolve(); \
	  pathlib.Path(site.getsitepackages()[0], 'attnkit-main-venv.pth').write_text(f'import site; site.addsitedir({str(main)!r})\n')"
	# numpy stays the main venv's (2.4): kernels/runtime.py fixes triton 3.6's interpreter for it.
	$(COMPAT)/bin/pip install -q --no-deps triton==$(COMPAT_TRITON)
	$(COMPAT)/bin/python -c "import triton; assert triton.__version__ == '$(COMPAT_TRITON)', triton.__version__"
	touch $(COMPAT_STAMP)

# Debian packages the zoo uses at run time: flite, the ASR default's second synthesiser. Installed when missing
# and this user can (root with apt-get); otherwise one line says what to install (`--opt synths=espeak` works
# without it).
DEBIAN_DEPS := flite
system-deps:
	@for pkg in $(DEBIAN_DEPS); do command -v $$pkg >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get install -y -q $$pkg >/dev/null 2>&1; } || { command -v $$pkg >/dev/null \
	  || echo "note: the Debian package $$pkg is missing (apt-get install $$pkg): attnkit train --model asr needs it"; }; done

install: $(STAMP) system-deps

# ruff, and import-linter's layer contracts (pyproject.toml) on the installed layout; tests/test_layering.py.
LINT = $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layering.py
lint: $(STAMP)
	$(LINT)

# Lint first; then both runs always happen; the target fails if any failed.
test: $(STAMP) $(COMPAT_STAMP) system-deps
	@status=0; \
	$(LINT) || status=1; \
	$(BIN)/python -m pytest -n 2 tests --ignore=tests/test_layering.py || status=1; \
	$(COMPAT_RUN) || status=1; \
	exit $$status

# The kernels again under the oldest supported triton, through its interpreter: a representative subset (every
# kernel family forward and backward, GQA, odd head dims, empty rows, decoding, and the registered ops on the
# Triton path), so CI stays in budget; and the position kernels compiled for sm_90 in their launch configs (the
# interpreter cannot see Triton 3.6's pipeliner failing on them, as it did on an H200 on 2026-12-04).
# `make test-compat COMPAT_TESTS=` runs the whole kernel suite instead.
COMPAT_TESTS := -k 'plain_gqa_d40 or attn_mask_full_empty_rows or lq1_decode_bias_kpm or \
	(relative_kernel_fp32 and empty-rows) or far-tiles or 6-heads or test_rotary or triton_kernels_through_the_ops \
	or (compile_for_sm90 and positions)'
COMPAT_RUN = $(COMPAT)/bin/python -m pytest -n 2 tests/kernels tests/ops/test_compile.py $(COMPAT_TESTS)
test-compat: $(COMPAT_STAMP)
	$(COMPAT_RUN)

demo: $(STAMP)
	TRITON_INTERPRET= $(BIN)/attnkit train --model gpt --flavor speedrun --out runs/demo
	TRITON_INTERPRET= $(BIN)/attnkit sample --run runs/demo --prompt "The " --max-new-tokens 300

bench: $(STAMP)
	$(BIN)/attnkit bench-kernels --device cpu --quick

clean:
	rm -rf $(VENV) $(COMPAT) runs .pytest_cache
