"""The interpreter runs a kernel's semantics, not Triton's code generator: a kernel can pass every interpreted
test and still fail to compile for a GPU (e.g. a plain Python global read inside @triton.jit). These tests
compile every kernel for an H100 (sm_90), without a GPU, in a fresh process without TRITON_INTERPRET
(`benchmarks/compile_check_sm90.py`; about 90 s of CPU for the attention kernels, 20 s for the rest)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile_check_sm90.py"


@pytest.mark.parametrize("which, kernels", [
    ("attention", 14),   # fwd, dK/dV, dQ in three mask/dtype sets + dbias in three broadcast shapes + 2 combines
    ("positions", 12),   # relative / T5 / ALiBi fwd, dK/dV, dQ, drel variants (joint and split) + 2 rotary layouts
])
def test_kernels_compile_for_sm90(which, kernels):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(SCRIPT), which], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(compiled) == kernels, result.stdout
