"""The interpreter runs a kernel's semantics, not Triton's code generator: a kernel can pass every interpreted
test and still fail to compile for a GPU (e.g. a plain Python global read inside @triton.jit). This compiles
the relative-position and rotary kernels for an H100 (sm_90), without a GPU, in a fresh interpreter-free process.
The fused attention kernels take about a CPU-minute each to compile, so CI leaves them to
`benchmarks/compile_check_sm90.py attention`."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile_check_sm90.py"


def test_relative_and_rotary_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(SCRIPT), "positions"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(compiled) == 9, result.stdout  # 7 position-kernel variants + 2 rotary layouts
