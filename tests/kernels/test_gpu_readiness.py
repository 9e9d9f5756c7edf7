"""GPU readiness without a GPU: a slice of the sm_90a static report holds the bar (0 spill bytes, every dot a
wgmma), benchmarks/gpu_check.sh runs its whole control flow on CPU (`--dry-run`, kernels interpreted), and the TTIR
identity check of kernel refactors (benchmarks/ttir_identity.py) tells apart what it should and nothing else.

They run in fresh processes: the static report must not see TRITON_INTERPRET, the dry run sets it itself."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_static_report_slice_kept_configs_do_not_spill(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "static.json"
    # The kept configs of the split dV pass at D = 128: two compiles (~5 s each on a free core).
    result = subprocess.run([sys.executable, str(BENCH / "gpu_static_report.py"), "--kernel", "dv", "--head-dim", "128",
                             "--dtype", "bf16", "--mask", "causal", "--kept-only", "--json", str(out)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert len(rows) >= 2  # at least two kept configs per (kernel, D)
    for row in rows:
        assert set(row) >= {"kernel", "block_m", "block_n", "num_warps", "num_stages", "head_dim", "dtype", "mask",
                            "registers", "spill_bytes", "shared_bytes", "wgmma", "mma_sync", "kept"}
        assert row["kept"] and row["spill_bytes"] == 0 and row["mma_sync"] == 0 and row["wgmma"] > 0
        assert 0 < row["registers"] <= 255 and row["shared_bytes"] > 0


def test_gpu_check_dry_run(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, ATTNKIT_REINSTALL="0")  # CI has attnkit installed already
    result = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path), "--dry-run"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) <= 8 and {"env.json", "summary.md", "attention.json", "flex.json", "relative.json"} <= set(files)
    info = json.loads((tmp_path / "env.json").read_text())
    steps = ["attention", "flex", "relative", "decode", "decode-configs", "tests"]
    assert info["dry_run"] and [s["step"] for s in info["steps"]] == steps
    assert all(step["status"] == "ok" for step in info["steps"]) and "100%" in info["steps"][-1]["tail"]  # the pytest step
    records = json.loads((tmp_path / "attention.json").read_text())
    ok = {(r["op"], r["mode"]) for r in records if r["provider"] == "attnkit-triton" and r["status"] == "ok"}
    assert ok == {("causal", "fwd"), ("causal", "fwd+bwd"), ("full", "fwd"), ("full", "fwd+bwd")}
    rel = json.loads((tmp_path / "relative.json").read_text())
    assert any(r["provider"] == "skewing" and r["status"] == "ok" for r in rel)
    decode = json.loads((tmp_path / "decode.json").read_text())
    assert {r["provider"] for r in decode if r["status"] == "ok"} >= {"attnkit-triton", "attnkit-triton-plain"}
    probe = json.loads((tmp_path / "decode_configs.json").read_text())  # the listed config and a 16-row query tile
    assert [r["config"][0] for r in probe] == [128, 16]
    assert all(r[path]["status"] == "ok" and r[path]["max_err"] < 1e-5
               for r in probe for path in ("split", "plain", "sdpa"))
    assert "attnkit-triton" in (tmp_path / "summary.md").read_text() and "× sdpa-flash" in result.stdout


def _ttir_identity():
    spec = importlib.util.spec_from_file_location("bench_ttir_identity", BENCH / "ttir_identity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ttir_identity_ignores_names_locations_and_constant_order_only():
    normalize = _ttir_identity().normalize
    base = ('  %c0_i32 = arith.constant 0 : i32 loc(#loc1)\n  %c63_i32 = arith.constant 63 : i32 loc(#loc2)\n'
            '  %lo = arith.addi %x, %c63_i32 : i32 loc(#loc3)\n  %hi = arith.maxsi %lo, %c0_i32 : i32 loc(#loc4)\n'
            '#loc1 = loc("attention.py":10:5)')
    renamed = ('  %band = arith.constant 63 : i32 loc(#loc7)\n  %band_1 = arith.constant 0 : i32 loc(#loc8)\n'
               '  %start = arith.addi %y, %band : i32 loc(#loc9)\n  %stop = arith.maxsi %start, %band_1 : i32\n')
    assert normalize(base) == normalize(renamed)
    swapped = renamed.replace("arith.maxsi %start, %band_1", "arith.maxsi %band_1, %start")  # an operand order
    other_constant = renamed.replace("constant 0 :", "constant 1 :")
    assert normalize(base) != normalize(swapped) and normalize(base) != normalize(other_constant)

