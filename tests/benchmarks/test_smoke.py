"""Every script in benchmarks/ runs end to end at tiny sizes, so an API change that breaks one fails CI.

Each test imports the script and calls its `main(argv)` with the smallest arguments it takes, then checks
what the script itself checks or reports (same tokens from both decode paths, one record per provider and
length...). Timings at these sizes mean nothing and are not asserted. Not here, with the reason:
gpu_static_report.py, ttir_identity.py, compile_check_sm90.py, gpu_check.{py,sh} and decode_config_probe.py compile
for sm_90 or need CUDA; they have their own tests (tests/kernels/test_compile_sm90.py,
tests/kernels/test_gpu_readiness.py: gpu_check.sh --dry-run, which runs decode_config_probe.py --dry-run).
decode_race_repro.py reproduces a GPU race (CUDA only, by design: the interpreter cannot race); its fix is pinned
by tests/kernels/test_decode_split.py.
"""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
COVERED_ELSEWHERE = {"gpu_static_report.py", "ttir_identity.py", "compile_check_sm90.py", "gpu_check.py",
                     "decode_config_probe.py", "decode_race_repro.py"}


def load(name: str):
    """benchmarks/NAME.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def test_every_script_has_a_smoke_test():
    """A new script in benchmarks/ must get a test here (or a reason to be left out)."""
    this = Path(__file__).read_text()
    scripts = {p.name for p in BENCHMARKS.glob("*.py")} - COVERED_ELSEWHERE
    missing = [s for s in sorted(scripts) if f'load("{s[:-3]}")' not in this]
    assert not missing, f"benchmarks without a smoke test: {missing}"


def test_decode_speed():
    out = load("decode_speed").main(["--new-tokens", "4", "--prompt-len", "3", "--n-layer", "1", "--n-head", "2",
                                     "--n-embd", "16", "--vocab-size", "11"])
    assert out["same_tokens"]
    assert set(out["seconds"]) == {"kv cache", "recompute prefix"}


def test_static_cache_speed():
    out = load("static_cache_speed").main(["--context", "16", "--tokens", "2", "--rounds", "1", "--d-model", "16"])
    assert {k: len(v) for k, v in out.items()} == {"static": 1, "cat": 1}
    assert all(x > 0 for xs in out.values() for x in xs)


def test_sample_speed():
    out = load("sample_speed").main(["--contexts", "8,12", "--tokens", "3", "--rounds", "1", "--preset", "debug",
                                     "--arms", "cat,static", "--vocab-size", "11"])
    assert list(out) == [8, 12] and all(r["same_tokens"] for r in out.values())
    arms = [a for r in out.values() for a in r["arms"].values()]
    assert len(arms) == 4 and all(len(a["tokens_per_s"]) == 1 and a["tokens_per_s"][0] > 0 for a in arms)


def test_sample_profile():
    out = load("sample_profile").main(["--context", "8", "--steps", "2", "--rows", "3", "--preset", "debug"])
    assert out["cat"]["self_us"].get("aten::cat", 0) > 0 and "aten::cat" not in out["static"]["self_us"]
    assert all(out[c]["ms_per_step"] > 0 and out[c]["self_us"]["aten::addmm"] > 0 for c in ("static", "cat"))
    assert set(out["sdpa_us"]) == {"static view", "contiguous"} and min(out["sdpa_us"].values()) > 0


def test_decode_step_floor():
    """The lean step's logits are the model's bit for bit on both caches (the script exits otherwise)."""
    out = load("decode_step_floor").main(["--context", "8", "--steps", "3", "--rounds", "1", "--preset", "debug"])
    assert set(out["us_per_step"]) == {"model-cat", "model-static", "lean-cat", "lean-static", "sdpa", "cat copies"}
    assert all(len(v) == 1 and v[0] > 0 for v in out["us_per_step"].values())
    assert set(out["ratios"]) == {"model: static over cat", "lean: static over cat", "lean static over model static",
                                  "bound: 1 + cat copies / sdpa"}


def test_pack_speed():
    out = load("pack_speed").main(["--tokens", "300", "--rows", "4", "--block-size", "64", "--flavor", "debug"])
    assert 0 < out["fill"] <= 1 and out["packed"]["rows"] <= out["padded"]["rows"]
    assert all(out[a]["real_tokens"] >= 300 and out[a]["val_loss"] > 0 for a in ("packed", "padded"))


def test_pack_mix():
    out = load("pack_mix").main(["--batches", "3", "--rows", "4", "--block-size", "64"])
    assert set(out) == {"padded", "packed, pool carried over", "packed, pool drawn afresh"}
    # Every arm's trained tokens sit inside a row: positions below the block size, some at its start.
    assert all(0 <= r["position"] < 64 and 0 < r["first_32"] <= 1 for r in out.values())
    assert out["packed, pool carried over"]["tokens_per_step"] > 0


def test_image_timing():
    rows = load("image_timing").main(["--batch", "1", "--repeats", "1"])
    from attnkit.zoo.models.image import ATTENTION_PATTERNS

    assert list(rows) == list(ATTENTION_PATTERNS)
    # Full causal attention sees the most entries; every local pattern sees fewer.
    assert all(rows[p]["entries"] < rows["full"]["entries"] for p in rows if p != "full")


def test_relative_memory():
    records = load("relative_memory").main(["--lengths", "32", "--repeats", "1", "--heads", "1", "--dim", "8"])
    assert [(r["provider"], r["L"]) for r in records] == [("attnkit", 32), ("skewing", 32)]
    assert all("error" not in r and r["peak_mib"] >= r["base_mib"] > 0 for r in records), records


def test_train_throughput():
    out = load("train_throughput").main(["--flavor", "debug", "--warmup", "1", "--steps", "1", "--repeats", "1"])
    assert {k: len(v) for k, v in out.items()} == {"attnkit": 1, "plain": 1, "nanogpt": 1}
    assert all(v[0] > 0 for v in out.values())


def test_music_compare(tmp_path):
    results = load("music_compare").main(["--flavor", "debug", "--steps", "2", "--data", "chorales:12",
                                          "--device", "cpu", "--out", str(tmp_path)])
    assert list(results) == ["absolute", "relative"]
    for arm, r in results.items():
        assert r["steps"] == 2 and math.isfinite(r["val_nll"]), (arm, r)
        assert json.loads((tmp_path / arm / "config.json").read_text())["train"]["options"]["position"] == arm
    assert (tmp_path / "report.md").is_file() and (tmp_path / "nll_by_position.png").is_file()


def test_speedrun(tmp_path):
    # Each arm is its own process at 2 steps: nanoGPT's own train.py (the baseline) and two `attnkit train` arms.
    summary = load("speedrun").main(["--arms", "nanogpt,speedrun", "--custom", "short=--warmup-steps 1",
                                     "--scale", "0.0001", "--seeds", "0,1", "--out", str(tmp_path)])
    assert [s["arm"] for s in summary] == ["nanogpt", "speedrun", "short"]
    assert [s["steps"] for s in summary] == [2, 2, 2]
    nanogpt = summary[0]["passes"]
    assert len(nanogpt) == 2 and nanogpt[0]["final"] == nanogpt[1]["final"]  # its train.py has no seed knob
    # The baseline reaches its own final loss on both measures, when it ends.
    assert all(p["to_target"] == p["to_printed"] == p["wall"] and p["speedup"] == 1.0 for p in nanogpt)
    for s in summary:  # every arm's final model is re-evaluated on the common windows
        assert all(math.isfinite(p["common"]) for p in s["passes"])
    runs = json.loads((tmp_path / "speedrun.json").read_text())["runs"]
    losses = [[r["val_loss"] for r in rows] for rows in runs["speedrun"]]
    assert losses[0] != losses[1]  # our arms follow the seed
    assert {p.name for p in tmp_path.iterdir()} >= {"speedrun.png", "speedrun.md", "speedrun.json", "nanogpt-0.log"}


def test_icl_ablation():
    row = load("icl_ablation").main(["--arm", "smoke", "--steps", "2", "--d", "2", "--points", "5", "--layers", "1",
                                     "--heads", "1", "--width", "8", "--batch", "4", "--warmup", "1"])
    assert row["arm"] == "smoke" and len(row["ratio_below_d"]) == 1 and math.isfinite(row["err_at_2d"])
    assert set(row["agreement_by_k"]) >= {"least_squares"}
    tiny = ["--steps", "4", "--d", "2", "--points", "5", "--layers", "1", "--heads", "1", "--width", "8", "--batch", "4",
            "--warmup", "1", "--lr", "1e-3"]
    to_tenth, to_zero = (load("icl_ablation").main(["--arm", "s", *tiny, *extra])["final_lr"]
                         for extra in ([], ["--min-lr", "0"]))
    assert 1e-4 < to_tenth < 1e-3 and 0 < to_zero < to_tenth  # the cosine's floor moved from lr/10 to 0
    every_two = load("icl_ablation")
    every_two.CURVE_EVERY = 2
    curve = every_two.main(["--arm", "c", *tiny])["train_loss_every_2"]  # 4 steps: two means, the last step's in the second
    assert len(curve) == 2 and all(math.isfinite(v) and v > 0 for v in curve)
    # --weight-from: uniform before the step, weighted from it; the first steps then match the uniform run exactly
    late, uniform = (load("icl_ablation") for _ in range(2))
    late.CURVE_EVERY = uniform.CURVE_EVERY = 2
    late_curve = late.main(["--arm", "w", *tiny, "--loss-weight", "inverse_ls", "--weight-from", "2"])
    uniform_curve = uniform.main(["--arm", "u", *tiny])
    assert late_curve["train_loss_every_2"][0] == uniform_curve["train_loss_every_2"][0]
    assert late_curve["train_loss_every_2"][1] != uniform_curve["train_loss_every_2"][1]
    timed = load("icl_ablation").main(["--arm", "t", "--time-steps", "2", "--d", "2", "--points", "5", "--layers", "1",
                                       "--heads", "1", "--width", "8", "--batch", "4"])
    assert timed["ms_per_step"] > 0
    sparse = load("icl_ablation").main(["--arm", "sp", *tiny, "--d", "3", "--function", "sparse_linear",
                                        "--sparsity", "1"])
    assert len(sparse["ratio_to_lasso_below_d"]) == 2 and "ratio_to_lasso_below_d" not in row


def test_icl_checkpoints(tmp_path):
    from typer.testing import CliRunner

    from attnkit.cli.main import app

    run_dir, out = tmp_path / "run", tmp_path / "rows.jsonl"
    trained = CliRunner().invoke(app, ["train", "--model", "icl", "--flavor", "debug", "--opt", "function=sparse_linear",
                                       "--eval-interval", "10", "--keep-last", "3", "--out", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    argv = ["--run", str(run_dir), "--json", str(out), "--plot", str(tmp_path / "ratios.png"), "--ks", "2,3"]
    rows = load("icl_checkpoints").main(argv)
    assert [r["step"] for r in rows] == [10, 20, 30] and len(out.read_text().splitlines()) == 3
    errors = rows[0]["error_by_k"]
    assert rows[0]["over_lasso"] == [errors["transformer"][k] / errors["lasso"][k] for k in range(1, 4)]
    final = json.loads((run_dir / "summary.json").read_text())["error_by_k"]  # the last step is the run's weights,
    assert rows[-1]["error_by_k"] == final                                   # scored as the trainer scores them
    assert rows[0]["error_by_k"]["transformer"] != final["transformer"]
    assert (tmp_path / "ratios.png").stat().st_size > 10_000
    again = load("icl_checkpoints").main(argv + ["--every", "20"])  # already scored: read back, not scored again
    assert again == rows and len(out.read_text().splitlines()) == 3


def test_icl_sparse_baselines(tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text("earlier\n")
    row = load("icl_sparse_baselines").main(["--d", "4", "--points", "6", "--sparsity", "1", "--prompts", "16",
                                             "--alphas", "0.01,0.1", "--out", str(out)])
    assert out.read_text().splitlines() == ["earlier", json.dumps(row)]  # appended as one line
    assert list(row["lasso"]) == ["0.01", "0.1"] and len(row["bayes_optimal"]) == 6
    assert max(row["bayes_optimal"][2:]) < 1e-10 and all(g >= 0 for g in row["ls_minus_bayes"][1:])
    assert row["max_gain_of_tuning_alpha_below_d"] >= 0                # 0.01 is one of the α tried


def test_vit_ablation():
    row = load("vit_ablation").main(["--arm", "smoke", "--steps", "2", "--layers", "1", "--heads", "1",
                                     "--width", "8", "--batch", "4", "--warmup", "1", "--mixup", "0.2",
                                     "--seeds", "0", "1"])
    assert row["arm"] == "smoke" and len(row["final"]) == len(row["ema"]) == 2
    assert row["svm"] > 0.95  # the RBF SVM on the same split (98.3%), fitted in the same run


def test_run_dir_race():
    assert load("run_dir_race").main(["--races", "1"]) == 1  # one trained, the other refused in one line


def test_asr_ablation(tmp_path):
    rows = load("asr_ablation").main(["--arms", "base", "--steps", "1", "--flavor", "debug", "--test-clips", "2",
                                      "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    assert [(r["arm"], r["steps"]) for r in rows] == [("base", 1)]
    assert math.isfinite(rows[0]["wer_heldout_voices"]) and (tmp_path / "out" / "report.md").is_file()


def test_asr_other_voices_names_its_missing_package(tmp_path, monkeypatch, capsys):
    """It scores a trained run on flite's and festival's voices; a missing synthesiser is named, one line a voice."""
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert load("asr_other_voices").main(["--run", str(tmp_path), "--voices", "flite:slt,festival:ked"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["skipped flite", "skipped festival"]
    assert all("Debian packages flite, festival" in line for line in lines)


def test_asr_other_voices_warps_what_the_model_hears_and_writes_json_where_asked(tmp_path, capsys):
    if shutil.which("flite") is None:
        pytest.skip("needs the Debian package flite")
    load("asr_ablation").main(["--arms", "base", "--steps", "1", "--flavor", "debug", "--test-clips", "2",
                               "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    run, other = tmp_path / "out" / "base", load("asr_other_voices")
    assert other.main(["--run", str(run), "--warp", "3"]) == 2
    assert capsys.readouterr().err.strip() == "error: --warp must be in [0.5, 2], got 3.0"
    argv = ["--run", str(run), "--clips", "2", "--voices", "flite:slt", "--pocketsphinx", "0"]
    assert other.main([*argv, "--warp", "0.9", "--json", str(tmp_path / "warped.json")]) == 0
    assert other.main(argv) == 0
    warped, plain = (json.loads(p.read_text()) for p in (tmp_path / "warped.json", run / "other_voices.json"))
    assert (warped["warp"], plain["warp"]) == (0.9, 1.0) and not (run / "other_voices_warp0.9.json").exists()
    assert [r["voice"] for r in warped["rows"]] == [r["voice"] for r in plain["rows"]] == ["espeak-ng held-out",
                                                                                          "flite:slt"]


def test_asr_voice_traits_hears_a_man_below_a_woman():
    if shutil.which("flite") is None:
        pytest.skip("needs the Debian package flite")
    m1, f1, slt = load("asr_voice_traits").main(["--voices", "m1,f1,flite:slt", "--texts", "1"])
    assert m1["f0"] < 130 < f1["f0"] and slt["group"] == "unheard" and m1["group"] == f1["group"] == "training"
    assert all(250 < r["F1"] < r["F2"] < 3000 for r in (m1, f1, slt))
    assert slt["nearest_pitch"]["voice"] == "f1"        # slt's pitch (about 170 Hz) is a woman's, like f1's


def test_bert_finetune_ablation(tmp_path, capsys):
    # One debug pretraining, reused by the second call; arms differ in task and head.
    argv = ["--pretrained", str(tmp_path / "pre"), "--flavor", "debug", "--pretrain-steps", "2", "--seeds", "0,1",
            "--arm", "rw:steps=1,labels=8,test=8", "--arm", "order:task=word_order,pooling=surprise,steps=1,labels=8,test=8",
            "--out", str(tmp_path / "rows.jsonl")]
    rows = load("bert_finetune_ablation").main(argv)
    assert [(r["arm"], r["seed"], r["task"]) for r in rows] == [("rw", 0, "replaced_word"), ("rw", 1, "replaced_word"),
                                                               ("order", 0, "word_order"), ("order", 1, "word_order")]
    assert all(r["pretrain_steps"] == 2 and 0 <= r["finetune_acc_pretrained"] <= 1 for r in rows)
    weights = (tmp_path / "pre" / "model.safetensors").stat().st_mtime_ns
    again = load("bert_finetune_ablation").main(argv[:8] + ["--arm", "rw:steps=1,labels=8,test=8"])
    assert again[0] == dict(rows[0], wall_s=again[0]["wall_s"])  # same seeds, same numbers
    assert (tmp_path / "pre" / "model.safetensors").stat().st_mtime_ns == weights  # the pretraining was reused
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 4
    capsys.readouterr()
    assert load("bert_finetune_ablation").main(["--table", str(tmp_path / "rows.jsonl")]) == []
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[2].startswith("| 2, 0.15, ") and "| rw | labels=8, test=8, steps=1 | 2 |" in table[2]
    assert "task=word_order, labels=8, test=8, steps=1, pooling=surprise | 2 |" in table[3]
    lines = load("bert_finetune_ablation").main(["--baselines", "--arm", "rw:labels=8,test=8,corrupt=4"])
    assert [(r["arm"], r["corrupt"]) for r in lines] == [("rw", 4)] and 0 <= lines[0]["bigrams"] <= 1


def test_dt_ablation():
    out = load("dt_ablation").main(["--episodes", "20", "--steps", "3", "--context", "3", "--layers", "1",
                                    "--d-model", "16", "--eval-episodes", "2", "--targets", "20,60",
                                    "--return-embedding", "symlog", "--end-share", "0.5"])
    assert [r["target"] for r in out["rows"]] == [20, 60] and all(r["mean"] >= 1 for r in out["rows"])
    assert out["worst_gap"] == max(abs(r["mean"] - r["target"]) for r in out["rows"]) / 500
