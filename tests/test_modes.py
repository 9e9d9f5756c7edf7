"""attnkit.nn.modes.direct_calls: inside the scope hook-free modules run their forward without nn.Module.__call__,
modules with hooks keep it (and their hooks fire), outputs are bit-identical, and everything is put back on exit."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from attnkit.nn.modes import direct_calls
from attnkit.zoo.models.gpt import GPT, GPTConfig


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()


def _snapshot(model: nn.Module) -> list[tuple[nn.Module, type, dict]]:
    """Each module with its class and a copy of its instance dict (names → the objects held)."""
    return [(m, type(m), dict(m.__dict__)) for m in model.modules()]


def _assert_restored(before: list[tuple[nn.Module, type, dict]]) -> None:
    for m, cls, attrs in before:
        assert type(m) is cls
        assert m.__dict__.keys() == attrs.keys()
        assert all(m.__dict__[k] is v for k, v in attrs.items())


def _decode(model: GPT, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decode on a static cache: the logits of the prefill and of every one-token step, (steps + 1, B, V)."""
    caches = model.make_caches(prompt.shape[1] + steps)
    logits = [model(prompt, caches=caches)[0][:, -1]]  # (B, V)
    for _ in range(steps):
        logits.append(model(logits[-1].argmax(-1, keepdim=True), caches=caches)[0][:, -1])
    return torch.stack(logits)


def test_direct_calls_skip_module_call_and_restore_every_module():
    model = _gpt()
    before = _snapshot(model)
    with torch.inference_mode(), direct_calls(model):
        calls = []
        original = nn.Module.__call__
        nn.Module.__call__ = lambda self, *a, **k: calls.append(type(self)) or original(self, *a, **k)
        try:
            model(torch.tensor([[1, 2, 3]]))
        finally:
            nn.Module.__call__ = original
        assert calls == []  # no module went through nn.Module.__call__
        assert model.__dict__["blocks"] is model._modules["blocks"]  # read without __getattr__
        assert model.blocks[0].attn.__dict__["q_proj"] is model.blocks[0].attn._modules["q_proj"]
        assert model.lm_head.__dict__["weight"] is model.wte.weight  # tied weights stay one tensor
    _assert_restored(before)


def test_outputs_are_bit_identical_with_and_without():
    model = _gpt()
    prompt = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        plain = _decode(model, prompt, 12)
        with direct_calls(model):
            direct = _decode(model, prompt, 12)
    assert torch.equal(direct, plain)
    out = model.generate(prompt, 12, temperature=0.0)  # generate decodes inside direct_calls
    assert torch.equal(out[:, 7:], plain[:-1].argmax(-1).T)


def test_a_module_with_a_hook_keeps_its_call_and_the_hook_fires():
    model = _gpt()
    seen = []
    handle = model.blocks[1].mlp.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    pre = model.ln_f.register_forward_pre_hook(lambda module, args: seen.append("ln_f"))
    with torch.inference_mode(), direct_calls(model):
        model(torch.tensor([[1, 2, 3]]))
        assert type(model.blocks[1].mlp).__call__ is nn.Module.__call__
        assert type(model.blocks[0].mlp).__call__ is not nn.Module.__call__  # hook-free: switched
    assert seen == [(1, 3, 32), "ln_f"]
    handle.remove()
    pre.remove()


def test_a_global_hook_switches_no_module_and_fires_for_every_call():
    model = _gpt()
    names = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, args, out: names.append(type(m).__name__))
    try:
        with torch.inference_mode(), direct_calls(model):
            model(torch.tensor([[1, 2, 3]]))
            assert all(type(m).__call__ is nn.Module.__call__ for m in model.modules())
    finally:
        handle.remove()
    # per block: ln_1, q/kv/out proj, attn, ln_2, fc, proj, mlp, block; then ln_f, lm_head, GPT (wte: an nn.Embedding)
    assert names.count("Block") == 2 and names.count("Linear") == 2 * 5 + 1 and names[-1] == "GPT"


def test_restored_after_an_error_and_after_nesting():
    model = _gpt()
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="inside"):
        with direct_calls(model):
            raise RuntimeError("inside")
    _assert_restored(before)
    with direct_calls(model):
        inner_before = _snapshot(model)
        with direct_calls(model):
            pass
        _assert_restored(inner_before)  # the inner scope leaves the outer scope's changes alone
    _assert_restored(before)


def test_a_submodule_replaced_inside_the_scope_is_the_one_called():
    model = _gpt()
    with torch.inference_mode(), direct_calls(model):
        model.lm_head = nn.Linear(32, 40, bias=False)  # nn.Module.__setattr__ drops the cached attribute
        nn.init.zeros_(model.lm_head.weight)
        logits, _ = model(torch.tensor([[1, 2, 3]]))
    assert torch.equal(logits, torch.zeros(1, 1, 40))
    assert "lm_head" not in model.__dict__
