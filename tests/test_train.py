"""The generic trainer on the GPT debug flavor: run-dir files, exact resume, NaN stop, averaging, DDP,
optimizer groups and schedules."""
import io
import json
import math
import os

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from attnkit.engine.checkpoint import average_checkpoints, latest_step, step_checkpoints
from attnkit.config import TrainConfig
from attnkit.engine.optim import lr_at, param_groups
from attnkit.errors import UserError
from attnkit.zoo.tasks.gpt import GPTTask
from attnkit.engine.trainer import run_training, weight_ema
from multiproc import free_port, run_workers

QUIET = dict(console=Console(file=io.StringIO()))


def cfg(tmp_path, name="run", **kw):
    kw = {"flavor": "debug", "max_steps": 8, "eval_interval": 4, "eval_batches": 1, **kw}
    return TrainConfig(out=str(tmp_path / name), **kw)


def test_run_dir_contents_and_learning(tmp_path):
    result = run_training(cfg(tmp_path, max_steps=30, eval_interval=10), **QUIET)
    run = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "loss.png", "summary.json",
                 "tokenizer.json", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 10, 20, 30]  # step 0 too, as nanoGPT
    assert set(lines[0]) == {"step", "val_loss", "lr", "tokens_per_s", "wall_s"}
    assert set(lines[1]) == {"step", "train_loss", "val_loss", "lr", "tokens_per_s", "wall_s"}
    walls = [m["wall_s"] for m in lines]
    assert walls == sorted(walls) and walls[0] >= 0  # seconds since the run started, compile included
    assert lines[-1]["val_loss"] < lines[1]["val_loss"] < lines[0]["val_loss"]  # it learns
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_loss"] == lines[-1]["val_loss"] and summary["steps"] == 30
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["max_steps"] == 30 and saved["model"]["vocab_size"] == 67
    assert len(step_checkpoints(run)) == 1  # keep_last defaults to 1
    assert result.metrics == lines


def test_a_run_shorter_than_its_eval_interval_logs_start_and_end(tmp_path):
    result = run_training(cfg(tmp_path, max_steps=3, eval_interval=10), **QUIET)
    assert [m["step"] for m in result.metrics] == [0, 3]


def test_a_report_from_prepare_is_shown_before_the_first_step(tmp_path, monkeypatch):
    """Task.prepare may return a Report about its data (DT's dataset table): rendered once, after the run's
    start lines and before step 0's evaluation; its metrics reach summary.json."""
    from attnkit.zoo.report import Report

    gpt_prepare = GPTTask.prepare

    def prepare(self, run_dir):
        gpt_prepare(self, run_dir)
        report = Report({"corpus_note": 7})
        report.table("the corpus", ["characters"], [[len(self.data["train"])]])
        return report

    monkeypatch.setattr(GPTTask, "prepare", prepare)
    console = Console(file=io.StringIO(), width=120)
    result = run_training(cfg(tmp_path, max_steps=2, eval_interval=2), console=console)
    out = console.file.getvalue()
    assert out.count("the corpus") == 1
    assert out.index("flavor debug") < out.index("the corpus") < out.index("step      0")
    assert result.summary["corpus_note"] == 7
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["corpus_note"] == 7


@pytest.mark.parametrize("data", [{}, dict(options={"pack": True}, block_size=64), dict(ema_decay=0.9)],
                         ids=["text", "packed", "ema"])
def test_resume_is_exact(tmp_path, data):
    """k steps, 'killed' (steps after the last checkpoint lost), resumed to N == N steps uninterrupted. Packed
    documents: the packer's pool is restored too (Task.data_state). EMA: the moving average is restored, not
    restarted from the step-4 weights (its validation and its weights would differ)."""
    kw = dict(max_steps=12, eval_interval=4, dropout=0.1, grad_accum=2, **data)
    full = run_training(cfg(tmp_path, "full", **kw), **QUIET)
    run_training(cfg(tmp_path, "split", **kw), stop_after=6, **QUIET)  # checkpoint at 4; steps 5-6 lost
    assert latest_step(tmp_path / "split") == 4
    resumed = run_training(TrainConfig(out=str(tmp_path / "split"), resume=True), **QUIET)

    def strip(ms):
        return [{k: v for k, v in m.items() if k not in ("tokens_per_s", "wall_s")} for m in ms]

    assert strip(resumed.metrics) == strip(full.metrics)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for name in ("model.safetensors", "checkpoints/step_0000012.safetensors"):  # published and trained weights
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "split" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_weight_ema_pinned():
    """decay 0.5 over weights 1, 3, 5: the first update copies, then ema = 0.5·ema + 0.5·w → 1, 2, 3.5."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = weight_ema(model, 0.5)
    seen = []
    for w in (1.0, 3.0, 5.0):
        model.weight.data.fill_(w)
        ema.update_parameters(model)
        seen.append(ema.module.weight.item())
    assert seen == [1.0, 2.0, 3.5]
    assert not ema.module.training and model.weight.item() == 5.0


def test_ema_weights_are_published_and_evaluated(tmp_path):
    """With --ema-decay 0.5, RUN/model.safetensors after 3 steps is 0.25·w1 + 0.25·w2 + 0.5·w3 of the step
    checkpoints' trained weights, the run's final model is that average, and summary.json says so."""
    result = run_training(cfg(tmp_path, max_steps=3, eval_interval=1, keep_last=3, ema_decay=0.5), **QUIET)
    run = tmp_path / "run"
    w1, w2, w3 = (load_file(str(p)) for _, p in step_checkpoints(run))
    published = load_file(str(run / "model.safetensors"))
    for k in published:
        torch.testing.assert_close(published[k], 0.25 * w1[k] + 0.25 * w2[k] + 0.5 * w3[k])
    assert any(not torch.equal(published[k], w3[k]) for k in published)
    final = result.model.state_dict()
    assert all(torch.equal(final[k], published[k]) for k in published)
    assert result.summary["weights"] == "ema"
    assert json.loads((run / "summary.json").read_text())["weights"] == "ema"


def test_grad_accum_matches_a_bigger_batch(tmp_path):
    """Two micro-batches of 2 give the same update as one batch of 4 (same rows drawn, dropout 0)."""
    a = run_training(cfg(tmp_path, "a", max_steps=3, batch_size=4, eval_interval=3), **QUIET)
    b = run_training(cfg(tmp_path, "b", max_steps=3, batch_size=2, grad_accum=2, eval_interval=3), **QUIET)
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = GPTTask.loss

    def flaky(self, model, batch):
        calls["n"] += 1
        loss = real_loss(self, model, batch)
        return loss * float("nan") if calls["n"] == 8 else loss  # 1 eval at step 0, 4 steps, 1 eval, step 5

    monkeypatch.setattr(GPTTask, "loss", flaky)
    with pytest.raises(UserError, match=r"loss is nan at step 6.*last good checkpoint \(step 4\)"):
        run_training(cfg(tmp_path), **QUIET)
    run = tmp_path / "run"
    assert latest_step(run) == 4
    weights = load_file(str(run / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_average_checkpoints_is_the_mean(tmp_path):
    run_training(cfg(tmp_path, max_steps=9, eval_interval=3, keep_last=3), **QUIET)
    paths = [p for _, p in step_checkpoints(tmp_path / "run")]
    assert [s for s, _ in step_checkpoints(tmp_path / "run")] == [3, 6, 9]
    out = average_checkpoints(paths, tmp_path / "avg.safetensors")
    sds = [load_file(str(p)) for p in paths]
    avg = load_file(str(out))
    assert avg.keys() == sds[0].keys()
    for k in avg:
        torch.testing.assert_close(avg[k], (sds[0][k] + sds[1][k] + sds[2][k]) / 3)
    assert any(not torch.equal(avg[k], sds[-1][k]) for k in avg)


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="max-steps must be positive"):
        run_training(cfg(tmp_path, max_steps=-1), **QUIET)
    with pytest.raises(UserError, match="block size 5000 is larger than the data"):
        run_training(cfg(tmp_path, block_size=5000, data=_write(tmp_path / "small.txt", "hello " * 100)), **QUIET)
    with pytest.raises(UserError, match="nothing to resume"):
        run_training(cfg(tmp_path, "missing", resume=True), **QUIET)
    with pytest.raises(UserError, match=r"--ema-decay must be in \[0, 1\) \(0: off\), got 1.0"):
        run_training(cfg(tmp_path, ema_decay=1.0), **QUIET)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_param_groups_decay_only_matrices():
    model = GPTTask.build_model(dict(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = len(decay["params"]) + len(no_decay["params"])
    assert n == len(list(model.parameters()))  # tied head counted once


def test_schedules():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    cos = [lr_at(s, schedule="cosine", **kw) for s in range(120)]
    assert cos[0] == pytest.approx(1 / 11) and cos[9] == pytest.approx(10 / 11)
    assert cos[10] == pytest.approx(1.0) and cos[60] == pytest.approx(0.55) and cos[115] == 0.1
    assert all(a >= b for a, b in zip(cos[10:], cos[11:]))  # monotone decay after warmup
    noam = [lr_at(s, schedule="noam", **kw) for s in range(100)]
    assert max(noam) == pytest.approx(1.0) and noam.index(max(noam)) == 9  # peak at step = warmup
    assert noam[39] == pytest.approx(math.sqrt(10 / 40))  # inverse square root after it
    # The published formula d^-0.5 · min(s^-0.5, s · w^-1.5), scaled to peak 1.
    d, w = 512, 10
    ref = [d ** -0.5 * min(s ** -0.5, s * w ** -1.5) for s in range(1, 101)]
    assert noam == pytest.approx([r / max(ref) for r in ref])


def _ddp_worker(rank, world, port, out, result_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    result = run_training(TrainConfig(flavor="debug", out=out, max_steps=4, eval_interval=4, eval_batches=1,
                                      device="cpu"), console=Console(file=io.StringIO()))
    torch.save(result.model.state_dict(), os.path.join(result_dir, f"rank{rank}.pt"))


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    single = run_training(cfg(tmp_path, "single", max_steps=4, device="cpu"), **QUIET).model.state_dict()
    run_workers(_ddp_worker, args=(2, free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(single["wte.weight"], a["wte.weight"])  # 2 ranks saw different batches
    assert (tmp_path / "run" / "model.safetensors").is_file()
