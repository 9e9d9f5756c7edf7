"""GPT's modern-recipe switches (rotary, RMSNorm, QK-norm, ReLU², untied zero-init head, softcap, value
embeddings, U-net skips, sliding window with warmup), Muon's param groups on them, the speedrun flavor
and --compile in debug runs."""
import io
import json
import math

import pytest
import torch
from rich.console import Console

from attnkit.config import TrainConfig
from attnkit.generation.generate import generate
from attnkit.zoo.models.gpt import GPT, GPTConfig
from attnkit.engine.optim import hidden_matrices
from attnkit.zoo.tasks.gpt import MODEL_SWITCHES, SPEEDRUN_OPTIONS, GPTTask
from attnkit.engine.trainer import run_training
from attnkit.engine.resolve import resolve_config

QUIET = dict(console=Console(file=io.StringIO()))
RECIPE = dict(position="rotary", bias=False, **{k: SPEEDRUN_OPTIONS[k] for k in MODEL_SWITCHES})


def model(n_layer=4, **switches):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=n_layer, n_head=2, n_embd=16, **switches))


@pytest.mark.parametrize("switch", [{}, RECIPE, dict(norm="rms"), dict(qk_norm=True), dict(activation="relu2"),
                                    dict(tie_head=False, zero_init=True), dict(softcap=2.0), dict(value_embeds=2),
                                    dict(unet=True), dict(window=4)])
def test_each_switch_trains_and_shapes_hold(switch):
    m = model(**switch)
    x, y = torch.randint(0, 11, (2, 3, 16))
    logits, loss = m(x, y)
    assert logits.shape == (3, 16, 11) and math.isfinite(loss.item())
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())  # every switch's parameters are used
    if switch.get("softcap"):
        assert logits.abs().max() < switch["softcap"]


def test_zero_init_untied_head_starts_uniform_and_blocks_start_as_identity():
    m = model(tie_head=False, zero_init=True)
    assert m.lm_head.weight is not m.wte.weight
    x = torch.randint(0, 11, (2, 16))
    logits, loss = m(x, x)
    assert torch.equal(logits, torch.zeros_like(logits)) and loss.item() == pytest.approx(math.log(11))
    for block in m.blocks:
        assert not block.attn.out_proj.weight.any() and not block.mlp.proj.weight.any()


def test_value_embeds_and_unet_wiring():
    m = model(value_embeds=2, unet=True)
    assert len(m.value_embeds) == 2 and m.skip_weights.shape == (2,)
    # Layer i and n-1-i share table i; only those layers learn how much of it to mix in.
    assert [m._value_table(i) for i in range(4)] == [0, 1, 1, 0]
    assert all(b.attn.value_lambdas is not None for b in m.blocks)
    assert [model(value_embeds=1)._value_table(i) for i in range(4)] == [0, None, None, 0]
    with pytest.raises(ValueError, match="value_embeds"):
        GPTConfig(n_layer=4, value_embeds=3)


def test_sliding_window_limits_what_each_position_sees():
    """Two layers with window 4: position p sees tokens p-6..p, so changing token 0 moves positions ≤ 6 only."""
    m = model(n_layer=2, window=4, **{k: v for k, v in RECIPE.items() if k != "window"}).double()
    for p in m.parameters():  # zero-init would make the output blind to inputs
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randint(1, 11, (1, 16))
    x2 = x.clone()
    x2[0, 0] = 0
    a, _ = m(x, x)
    b, _ = m(x2, x2)
    moved = (a - b).abs().amax(-1)[0] > 1e-9
    assert moved[:7].all() and not moved[7:].any()
    # window=... narrows a full-context model for one call (window warmup), the same as building it narrow.
    full = model(n_layer=2, **{k: v for k, v in RECIPE.items() if k != "window"})
    full.load_state_dict(m.float().state_dict())
    torch.testing.assert_close(full(x, x, window=4)[0], m.float()(x, x)[0])


def test_recipe_cached_generation_equals_uncached():
    m = model(**{**RECIPE, "window": 6}).double()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    prompt = torch.randint(0, 11, (2, 5))
    runs = [generate(m, prompt, 20, generator=torch.Generator().manual_seed(7), use_cache=c) for c in (True, False)]
    assert torch.equal(runs[0], runs[1])


def test_muon_groups_on_the_recipe():
    m = model(**RECIPE)
    hidden = {id(p) for p in hidden_matrices(m)}
    names = {n for n, p in m.named_parameters() if id(p) in hidden}
    assert names == {f"blocks.{i}.{w}.weight" for i in range(4)
                     for w in ("attn.q_proj", "attn.kv_proj", "attn.out_proj", "mlp.fc", "mlp.proj")}
    # Embeddings (token and value), the untied head, norms, value lambdas and skip weights stay on AdamW.


def test_speedrun_flavor_debug_run_with_window_warmup(tmp_path):
    cfg = TrainConfig(model="gpt", flavor="speedrun", out=str(tmp_path / "run"), max_steps=8, batch_size=4,
                      block_size=32, eval_interval=4, eval_batches=1,
                      options=dict(window=16, window_warmup=True))
    seen = []
    original = GPTTask.loss

    def spy(self, model, batch):
        seen.append(self.window if model.training else None)
        return original(self, model, batch)

    GPTTask.loss = spy
    try:
        result = run_training(cfg, **QUIET)
    finally:
        GPTTask.loss = original
    assert isinstance(result.model, GPT) and result.model.config.unet and not result.model.config.tie_head
    rows = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 4, 8]
    walls = [r["wall_s"] for r in rows]
    assert walls == sorted(walls) and walls[0] > 0
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert [w for w in seen if w is not None] == [4, 4, 8, 8, 12, 12, 16, 16]  # quarters of the window
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["window"] == 16 and saved["model"]["qk_norm"] is True


def test_demo_flavor_config_has_no_switch_keys(tmp_path):
    """Switches at their defaults stay out of the saved model config, so older runs resume unchanged."""
    task = GPTTask(resolve_config(TrainConfig(flavor="demo", out=str(tmp_path / "x"))))
    task.prepare(tmp_path)
    assert set(task.model_config()) == {"n_layer", "n_head", "n_embd", "vocab_size", "block_size", "dropout",
                                        "position"}


def test_compile_debug_run(tmp_path):
    result = run_training(TrainConfig(model="gpt", flavor="debug", out=str(tmp_path / "c"), max_steps=4,
                                      eval_interval=4, eval_batches=1, compile=True), **QUIET)
    assert result.summary["steps"] == 4 and math.isfinite(result.summary["val_loss"])
    assert result.metrics[-1]["wall_s"] >= result.metrics[0]["wall_s"]


def test_speedrun_resume_is_exact(tmp_path):
    """Muon + AdamW state goes into the checkpoint and back: a resumed run replays the uninterrupted one."""
    kw = dict(model="gpt", flavor="speedrun", max_steps=6, batch_size=2, block_size=16, eval_interval=3,
              eval_batches=1, device="cpu")
    full = run_training(TrainConfig(out=str(tmp_path / "full"), **kw), **QUIET)
    run_training(TrainConfig(out=str(tmp_path / "split"), **kw), stop_after=4, **QUIET)
    resumed = run_training(TrainConfig(out=str(tmp_path / "split"), resume=True), **QUIET)

    def strip(ms):
        return [{k: v for k, v in m.items() if k not in ("tokens_per_s", "wall_s")} for m in ms]

    assert strip(resumed.metrics) == strip(full.metrics)
    assert resumed.metrics[-1]["wall_s"] > resumed.metrics[1]["wall_s"]  # the clock continues across resume
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
