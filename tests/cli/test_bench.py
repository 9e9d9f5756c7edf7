"""`attnkit bench-kernels`: records, correctness-before-timing, clean errors, plot and CSV output.

Runs on CPU with tiny shapes (conftest sets TRITON_INTERPRET=1, so the Triton kernels run interpreted).
"""
import csv
import json

import pytest
import torch

from attnkit.bench import PROVIDERS, Provider
from attnkit.bench.cases import build_case, flops, visible_pairs
from attnkit.bench.measure import TOLERANCE
from attnkit.bench.report import JSON_KEYS
from attnkit.cli.main import main
from attnkit.kernels.reference import attention_reference

STATUSES = {"ok", "wrong", "unsupported", "unavailable", "skipped", "error", "oom"}


def run_cli(args):
    try:
        main(["bench-kernels", "--device", "cpu", *args])
    except SystemExit as e:
        return e.code
    return 0


def test_quick_json_has_checked_records_for_three_providers(tmp_path):
    out = tmp_path / "out.json"
    assert run_cli(["--quick", "--op", "causal,rel", "--lengths", "64,128", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    for r in records:
        assert set(JSON_KEYS) <= set(r), r
        assert r["status"] in STATUSES
        assert r["status"] == "ok" or r["reason"], r  # no number without saying why
        assert r["device"] == "cpu" and r["dtype"] == "float32" and r["D"] == 64
    ok = [r for r in records if r["status"] == "ok"]
    assert len({r["provider"] for r in ok}) >= 3
    for r in ok:  # timed only after passing the float64 check
        assert r["max_err"] is not None and r["max_err"] <= TOLERANCE[torch.float32]
        assert r["ms"] > 0
        if not r["interpreted"]:
            assert r["tflops"] == pytest.approx(flops(r["op"], r["mode"], r["B"], r["H"], r["L"], r["D"])
                                                / (r["ms"] * 1e-3) / 1e12)
    by = {(r["provider"], r["op"], r["L"]): r for r in records}
    # The ratio is baseline ms / ms: exactly 1 for the baseline itself (SDPA; bias+sdpa for rel).
    assert by[("sdpa", "causal", 64)]["ratio"] == pytest.approx(1.0)
    assert by[("bias+sdpa", "rel", 128)]["ratio"] == pytest.approx(1.0)
    assert by[("sdpa", "rel", 64)]["status"] == "unsupported"
    assert by[("skewing", "rel", 64)]["status"] == "ok"
    assert by[("flash-attn", "causal", 64)]["status"] == "unavailable"
    # Shapes follow the fixed-token family: B = tokens / L, H = hidden / D.
    assert (by[("naive", "causal", 64)]["B"], by[("naive", "causal", 128)]["B"]) == (4, 2)
    triton = by[("attnkit-triton", "causal", 64)]
    assert triton["status"] == "ok" and triton["interpreted"] and triton["tflops"] is None


def _register(monkeypatch, name, forward_of_case):
    monkeypatch.setitem(PROVIDERS, name, Provider(name, "test provider", ("causal", "full"),
                                                  setup=lambda case: (lambda: forward_of_case(case))))


def test_wrong_results_are_reported_not_timed(tmp_path, monkeypatch):
    # Off by 10% in the output: wrong in every mode.
    _register(monkeypatch, "off-by-ten", lambda c: 1.1 * attention_reference(c.q, c.k, c.v, causal=c.causal))
    # Right forward, but no gradient reaches q: fine for fwd, wrong for bwd.
    _register(monkeypatch, "no-dq", lambda c: attention_reference(c.q.detach(), c.k, c.v, causal=c.causal))
    out = tmp_path / "out.json"
    code = run_cli(["--quick", "--op", "causal", "--provider", "off-by-ten,no-dq,naive", "--lengths", "64",
                    "--mode", "fwd,bwd", "--baseline", "naive", "--json", str(out)])
    assert code == 0
    by = {(r["provider"], r["mode"]): r for r in json.loads(out.read_text())}
    for key in [("off-by-ten", "fwd"), ("off-by-ten", "bwd"), ("no-dq", "bwd")]:
        r = by[key]
        assert r["status"] == "wrong", r
        assert r["ms"] is None and r["tflops"] is None and r["ratio"] is None
        assert r["max_err"] > TOLERANCE[torch.float32]
    assert "out" in by[("off-by-ten", "fwd")]["reason"] and "dq" in by[("no-dq", "bwd")]["reason"]
    assert by[("no-dq", "fwd")]["status"] == "ok" and by[("naive", "bwd")]["status"] == "ok"


@pytest.mark.parametrize("args, needle", [
    (["--op", "nope"], "unknown op 'nope'"),
    (["--provider", "fastest-ever"], "unknown provider 'fastest-ever'"),
    (["--mode", "sideways"], "unknown mode 'sideways'"),
    (["--lengths", "64,abc"], "cannot read 'abc'"),
])
def test_unknown_names_are_one_line_errors(capsys, args, needle):
    assert run_cli(["--quick", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err
    assert len(err.splitlines()) == 1


def test_plot_png_csv_and_markdown(tmp_path):
    png, table, md = tmp_path / "bench.png", tmp_path / "bench.csv", tmp_path / "bench.md"
    assert run_cli(["--quick", "--op", "causal,full", "--provider", "naive,sdpa,sdpa-math", "--lengths", "32,64",
                    "--plot", str(png), "--csv", str(table), "--markdown", str(md)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 * 3 * 2 and set(JSON_KEYS) <= set(rows[0])
    assert all(r["status"] == "ok" and float(r["ms"]) > 0 for r in rows)
    text = md.read_text()
    assert text.count("| provider | L=32 (B=8) | L=64 (B=4) |") == 2 and "| sdpa-math | " in text


def test_cpu_peak_memory_counts_the_naive_logits(tmp_path):
    out = tmp_path / "out.json"
    L, B, H = 512, 1, 2  # naive holds (B, H, L, L) float32 logits and probabilities: 2 MiB each
    assert run_cli(["--op", "full", "--provider", "naive,sdpa-flash", "--lengths", str(L), "--tokens", str(B * L),
                    "--hidden", str(H * 64), "--head-dim", "64", "--min-time", "0.01", "--memory",
                    "--json", str(out)]) == 0
    mem = {r["provider"]: r["peak_mem_mb"] for r in json.loads(out.read_text())}
    inputs_mb = 3 * B * H * L * 64 * 4 / 2 ** 20
    assert mem["naive"] >= inputs_mb + 2 * B * H * L * L * 4 / 2 ** 20 * 0.9
    assert inputs_mb <= mem["sdpa-flash"] < mem["naive"]


def test_flop_formula():
    full = flops("full", "fwd", 2, 4, 256, 64)
    assert full == 4 * 2 * 4 * 256 * 256 * 64
    assert flops("causal", "fwd", 2, 4, 256, 64) == full / 2
    assert flops("full", "bwd", 2, 4, 256, 64) == 2.5 * full
    assert flops("full", "fwd+bwd", 2, 4, 256, 64) == 3.5 * full
    # Sliding window: the exact number of visible pairs, here W = L/4 = 4 keys per query.
    case = build_case("window", 1, 1, 16, 8, torch.float32, "cpu")
    assert case.extras["window"] == (3, -1)
    assert visible_pairs("window", 16) == 1 + 2 + 3 + 4 * 13
