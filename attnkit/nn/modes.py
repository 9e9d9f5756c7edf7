"""Train/eval mode as a scope: the mode is always restored, so no caller leaves a model in the wrong one."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch.nn as nn


@contextlib.contextmanager
def mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """`with mode(model, training=False): ...` runs in eval mode and puts back each submodule's own mode."""
    before = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for m, was in before:
            m.training = was


def model_device(model: nn.Module):
    """The device of the model's parameters (all on one device in the zoo)."""
    return next(model.parameters()).device
