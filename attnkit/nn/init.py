"""Weight initialisation shared by the zoo (the shared layers themselves live in attnkit.nn.blocks)."""
from __future__ import annotations

import torch.nn as nn


def init_weights(m: nn.Module) -> None:
    """GPT-2 / BERT init, for `model.apply`: Linear and Embedding weights ~ N(0, 0.02), Linear biases zero."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
