"""Every zoo model computes what it computed before the shared-block refactor, and loads old checkpoints.

The expected values in tests/models/pinned/*.json were written by tests/models/pinned_cases.py with the
code before issue 13 (one shared Block, one decode loop). For each case: the seeded model gives the same
outputs (so the same initial weights and the same forward), the decode loops give the same tokens, and a
state dict written under the old parameter names loads into today's model with the same outputs.
"""
from __future__ import annotations

import json

import pytest
import torch

from pinned_cases import CASES, PINNED, run_case


def _close(got, want, path=""):
    if isinstance(want, dict):
        assert set(got) >= set(want), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-5), path
    else:
        assert got == want, path


def _old_state_dict(model: torch.nn.Module, old: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Today's weights under the names the pinned (old) model used: each old tensor is found among today's
    by its shape and values (sum, sum of |x|), so the rename rules under test are not used to build it.
    Tensors that are equal by value (fresh LayerNorm weights, zero biases) are matched in order."""
    pool = list(model.state_dict().items())
    out = {}
    for key, want in old.items():
        for i, (name, value) in enumerate(pool):
            v = value.double()
            if list(value.shape) == want["shape"] and v.sum().item() == pytest.approx(want["sum"], abs=1e-9) \
                    and v.abs().sum().item() == pytest.approx(want["abs_sum"], abs=1e-9):
                out[key] = pool.pop(i)[1].clone()
                break
        else:
            raise AssertionError(f"no tensor of today's model matches the old {key}")
    assert not pool, [name for name, _ in pool]
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_same_outputs_as_before_the_refactor(name):
    pinned = json.loads((PINNED / f"{name}.json").read_text())
    _, outputs = run_case(name)
    _close(outputs, pinned["outputs"])


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoint_with_old_names_loads(name):
    pinned = json.loads((PINNED / f"{name}.json").read_text())
    model, outputs = run_case(name)
    old = _old_state_dict(model, pinned["state_dict"])
    for p in model.parameters():  # forget today's weights; the old names must bring them back
        p.data.zero_()
    missing, unexpected = model.load_state_dict(old, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    _close(run_case(name, model)[1], outputs)
