"""Optimizers: Muon on the hidden matrices with AdamW on the rest, the shared schedule, the trapezoid."""
import pytest
import torch
import torch.nn as nn

from attnkit.errors import UserError
from attnkit.engine.optim import hidden_matrices, lr_at, make_optimizer


class Tiny(nn.Module):
    """An embedding, two hidden Linear layers with biases, a gain and an untied head named lm_head."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 8)
        self.fc = nn.Linear(8, 16)
        self.proj = nn.Linear(16, 8)
        self.gain = nn.Parameter(torch.ones(8))
        self.lm_head = nn.Linear(8, 10, bias=False)

    def forward(self, x):
        return self.lm_head(self.proj(torch.relu(self.fc(self.wte(x)))) * self.gain)


CPU = torch.device("cpu")


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    model = Tiny()
    assert [id(p) for p in hidden_matrices(model)] == [id(model.fc.weight), id(model.proj.weight)]
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.95), CPU, optimizer="muon", muon_lr=0.02)
    assert isinstance(opt.muon, torch.optim.Muon) and isinstance(opt.adamw, torch.optim.AdamW)
    muon_ids = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    adam = {id(p): g["weight_decay"] for g in opt.adamw.param_groups for p in g["params"]}
    assert muon_ids == {id(model.fc.weight), id(model.proj.weight)}
    # Every parameter exactly once; matrices on AdamW decayed, vectors not.
    assert len(muon_ids) + len(adam) == len(list(model.parameters())) and not muon_ids & set(adam)
    assert adam[id(model.wte.weight)] == adam[id(model.lm_head.weight)] == 0.1
    assert adam[id(model.fc.bias)] == adam[id(model.gain)] == 0.0
    # The trainer's lr = schedule · lr_scale puts Muon at its own peak.
    assert [g["lr_scale"] for g in opt.param_groups] == [pytest.approx(20.0), 1.0, 1.0]


def test_tied_head_stays_on_adamw():
    model = Tiny()
    model.lm_head.weight = model.wte.weight
    model.head = model.lm_head  # even under another name, a weight shared with an embedding is not hidden
    assert {id(p) for p in hidden_matrices(model)} == {id(model.fc.weight), id(model.proj.weight)}


def test_muon_adamw_steps_both_and_round_trips_state():
    torch.manual_seed(0)
    model = Tiny()
    opt = make_optimizer(model, 1e-2, 0.0, (0.9, 0.95), CPU, optimizer="muon", muon_lr=0.05)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 10, (4, 5))
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())  # every param moved
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in model.parameters())
    # The state dict round-trips into a fresh optimizer, so --resume continues the same run.
    fresh = make_optimizer(model, 1e-2, 0.0, (0.9, 0.95), CPU, optimizer="muon", muon_lr=0.05)
    fresh.load_state_dict(opt.state_dict())
    buf = opt.muon.state[model.fc.weight]["momentum_buffer"]
    assert torch.equal(fresh.muon.state[model.fc.weight]["momentum_buffer"], buf)
    assert torch.equal(fresh.adamw.state[model.wte.weight]["exp_avg"], opt.adamw.state[model.wte.weight]["exp_avg"])
    with pytest.raises(UserError, match="Muon"):
        fresh.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_unknown_optimizer_and_missing_muon(monkeypatch):
    with pytest.raises(UserError, match="optimizer must be one of"):
        make_optimizer(Tiny(), 1e-3, 0.1, (0.9, 0.95), CPU, optimizer="sgd")
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(UserError, match=r"torch.optim.Muon \(torch ≥ 2.9\)"):
        make_optimizer(Tiny(), 1e-3, 0.1, (0.9, 0.95), CPU, optimizer="muon")
    assert isinstance(make_optimizer(Tiny(), 1e-3, 0.1, (0.9, 0.95), CPU), torch.optim.AdamW)


def test_trapezoid_schedule():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100)
    lrs = [lr_at(s, schedule="trapezoid", **kw) for s in range(101)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert all(lr == 1.0 for lr in lrs[10:61])  # flat until the last 40% of the run
    assert lrs[80] == pytest.approx(0.55) and lrs[100] == 0.1
    assert all(a >= b for a, b in zip(lrs[60:], lrs[61:]))
