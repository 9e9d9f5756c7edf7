"""Print the Triton attention kernel's worst relative error per dtype over the test cases, next to torch's own.

Relative error = max|x − ref| / max|ref| with ref = attention_reference in float64; "torch" is the same
attention computed by torch in that dtype (the baseline the fp16/bf16 tests allow 3× of). Not collected by pytest:

    TRITON_INTERPRET=1 OMP_NUM_THREADS=1 .venv/bin/python tests/kernels/accuracy_report.py
"""
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from test_attention import (CASES, _masks, attention_triton, make_inputs, naive_lowp, rel_err, run,  # noqa: E402
                            run_ref64)

NAMES = ("out", "dq", "dk", "dv", "dbias")
device = "cuda" if torch.cuda.is_available() and os.environ["TRITON_INTERPRET"] != "1" else "cpu"
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    worst = {"triton": dict.fromkeys(NAMES, 0.0), "torch": dict.fromkeys(NAMES, 0.0)}
    for case, (B, Hq, Hkv, Lq, Lk, D, kw, bias_shape) in CASES.items():
        kw = _masks(kw, B, Hq, Lq, Lk, device)
        q, k, v, bias, do = make_inputs(B, Hq, Hkv, Lq, Lk, D, dtype, device, bias_shape)
        ref = run_ref64(q, k, v, bias, do, **kw)
        for who, fn in (("triton", attention_triton), ("torch", naive_lowp)):
            for name, got, r in zip(NAMES, run(fn, q, k, v, bias, do, **kw), ref):
                worst[who][name] = max(worst[who][name], rel_err(got, r))
    for who, errs in worst.items():
        print(f"{str(dtype):15s} {who:6s} " + "  ".join(f"{n} {e:.1e}" for n, e in errs.items()), flush=True)
