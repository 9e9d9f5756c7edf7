"""Non-Parametric Transformer (Kossen et al. 2021, "Self-Attention Between Datapoints: Going Beyond
Individual Input-Output Pairs in Deep Learning").

The whole dataset is one input: N rows × d attributes (the target is one of them). Every cell becomes an
e-dim vector, so a dataset is a (N, d, e) tensor, and two kinds of blocks alternate:

    ABD  attention between datapoints: each row flattened to d·e, attention across the N rows
    ABA  attention between attributes: within each row, attention across its d attributes (dim e)

Built bottom-up: CellEmbedding → ABD / ABA (the zoo's shared pre-LN Block, attnkit.nn.blocks) → NPTConfig → NPT → NPTFolds (one NPT per CV fold).
A model sees values (N, d) and a mask (N, d); masked cells are zeroed inside the model, so a masked value
can never leak into a prediction. Rows carry no position: in eval mode permuting the rows permutes the
outputs (tests/models/test_npt.py checks it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.blocks import Block, old_names_hook


class CellEmbedding(nn.Module):
    """Per attribute j: a linear map of [x_j, m_j] (numeric) or [one-hot(x_j), m_j] (categorical) to e dims,
    plus an attribute-index embedding and a column-type (numeric / categorical) embedding.

    The per-column linear maps are stored stacked, so the d maps run as a few tensor ops, not a loop.
    """

    def __init__(self, cardinalities: list[int], e: int):
        super().__init__()
        d = len(cardinalities)
        is_cat = torch.tensor([c > 0 for c in cardinalities])
        offsets = torch.tensor([0] + list(torch.cumsum(torch.tensor(cardinalities), 0)[:-1]))
        self.register_buffer("is_cat", is_cat, persistent=False)         # (d,)
        self.register_buffer("offsets", offsets, persistent=False)       # (d,) start of column j's classes
        self.register_buffer("last_class", (torch.tensor(cardinalities) - 1).clamp(min=0), persistent=False)
        # Unit-scale init (like nn.Embedding): the cells start as large as what the blocks add to them.
        self.value_weight = nn.Parameter(torch.randn(d, e))              # numeric x_j → e
        self.class_table = nn.Embedding(max(sum(cardinalities), 1), e)   # one-hot(x_j) → e, all columns
        self.mask_weight = nn.Parameter(torch.randn(d, e))               # mask bit m_j → e
        self.attribute = nn.Embedding(d, e)                              # which column (also the bias)
        self.column_type = nn.Embedding(2, e)                            # numeric or categorical

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """values, mask: (N, d) → (N, d, e). Masked cells contribute only their mask bit."""
        keep = (~mask).unsqueeze(-1).to(self.value_weight.dtype)                     # (N, d, 1)
        numeric = torch.where(self.is_cat, 0.0, values).unsqueeze(-1) * self.value_weight  # (N, d, e)
        codes = torch.where(self.is_cat, values, 0.0).long()                         # (N, d)
        codes = torch.minimum(codes.clamp(min=0), self.last_class) + self.offsets    # masked cells may hold junk
        categorical = self.class_table(codes) * self.is_cat.unsqueeze(-1)            # (N, d, e)
        h = keep * (numeric + categorical) + mask.unsqueeze(-1) * self.mask_weight   # (N, d, e)
        columns = torch.arange(values.shape[1], device=values.device)
        return h + self.attribute(columns) + self.column_type(self.is_cat.long())    # (N, d, e)


class ABD(Block):
    """Attention between datapoints: rows flattened to d·e attend to each other (the shared pre-LN Block)."""

    def __init__(self, d: int, e: int, n_head: int, ff_mult: int, dropout: float):
        super().__init__(d * e, n_head, d_ff=ff_mult * d * e, dropout=dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        N, d, e = h.shape
        x = super().forward(h.reshape(1, N, d * e))  # (1, N, d·e): one sequence whose tokens are the rows
        return x.view(N, d, e)


class ABA(Block):
    """Attention between attributes: within each row the d cells (dim e) attend to each other."""

    def __init__(self, e: int, n_head: int, ff_mult: int, dropout: float):
        super().__init__(e, n_head, d_ff=ff_mult * e, dropout=dropout)  # on (N, d, e): N sequences of d tokens


# Checkpoints written before the zoo shared one block (issue 13) named the block's parts like this.
OLD_NAMES = [(r"^blocks\.(\d+)\.ln1\.", r"blocks.\1.ln_1."), (r"^blocks\.(\d+)\.ln2\.", r"blocks.\1.ln_2."),
             (r"^blocks\.(\d+)\.ff\.up\.", r"blocks.\1.mlp.fc."),
             (r"^blocks\.(\d+)\.ff\.down\.", r"blocks.\1.mlp.proj.")]


@dataclass
class NPTConfig:
    cardinalities: list[int] = field(default_factory=lambda: [0, 2])  # per column: 0 numeric, C classes
    embed_dim: int = 16        # e: size of one cell's vector
    n_layer: int = 4           # blocks, alternating ABD, ABA, ABD, ... (the paper: 8)
    n_head_abd: int = 8        # heads of attention between datapoints (width d·e)
    n_head_aba: int = 1        # heads of attention between attributes (width e)
    ff_mult: int = 4           # feed-forward expansion of both block kinds
    dropout: float = 0.0
    head_scale: float = 1.0    # multiplies the outputs: a larger step for the heads (see NPT.forward)


class NPT(nn.Module):
    """values, mask (N, d) → (numeric predictions (N, d), class logits (N, d, Cmax)).

    Column j reads `numeric[:, j]` if it is numeric and `logits[:, j, :C_j]` if it has C_j classes; the
    logits of classes a column does not have are -inf.
    """

    def __init__(self, config: NPTConfig):
        super().__init__()
        self.config = config
        cards = config.cardinalities
        d, e, c_max = len(cards), config.embed_dim, max(max(cards), 1)
        self.embed = CellEmbedding(cards, e)
        self.blocks = nn.ModuleList(
            ABD(d, e, config.n_head_abd, config.ff_mult, config.dropout) if i % 2 == 0
            else ABA(e, config.n_head_aba, config.ff_mult, config.dropout) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(e)
        # One head per attribute, stored stacked: e → 1 (numeric) and e → C_j (categorical).
        self.numeric_head = nn.Parameter(torch.randn(d, e) * 0.02)
        self.numeric_bias = nn.Parameter(torch.zeros(d))
        self.class_head = nn.Parameter(torch.randn(d, e, c_max) * 0.02)
        self.class_bias = nn.Parameter(torch.zeros(d, c_max))
        valid = torch.arange(c_max)[None, :] < torch.tensor(cards)[:, None]   # (d, Cmax)
        self.register_buffer("valid_class", valid, persistent=False)
        self.register_load_state_dict_pre_hook(old_names_hook(OLD_NAMES))

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(values, mask)                          # (N, d, e)
        for block in self.blocks:
            h = block(h)                                      # (N, d, e)
        h = self.ln_f(h)
        numeric = (h * self.numeric_head).sum(-1) + self.numeric_bias                      # (N, d)
        logits = torch.einsum("nde,dec->ndc", h, self.class_head) + self.class_bias        # (N, d, Cmax)
        # Adam moves each head weight by about lr per step, so a head over few dims (e = 4..8) would need
        # hundreds of steps to reach confident logits; head_scale works as a larger head learning rate.
        numeric, logits = numeric * self.config.head_scale, logits * self.config.head_scale
        logits = logits.masked_fill(~self.valid_class, float("-inf"))
        return numeric, logits


def cell_losses(numeric: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                is_categorical: torch.Tensor) -> torch.Tensor:
    """Loss of every cell: squared error for numeric columns, cross-entropy for categorical ones.

    numeric, labels: (..., d); logits: (..., d, Cmax) with -inf on classes a column lacks;
    is_categorical: (d,) bool. Returns (..., d). A plain function, so it works on a DDP-wrapped model's output.
    """
    codes = torch.where(is_categorical, labels, 0.0).long()                             # (..., d)
    finite = logits.clamp(min=-1e4)          # numeric columns have no valid class at all: keep CE finite
    ce = F.cross_entropy(finite.flatten(0, -2), codes.flatten(), reduction="none").view_as(labels)
    se = (numeric - labels) ** 2
    return torch.where(is_categorical, ce, se)                                          # (..., d)


class NPTFolds(nn.Module):
    """K independent NPTs, one per cross-validation fold, trained in one loop (their losses are averaged).

    Stacking the folds into one module lets the generic trainer run a k-fold CV as a single run: one
    optimizer, one schedule, one checkpoint. values, mask: (K, N, d) → (K, N, d), (K, N, d, Cmax).
    """

    def __init__(self, config: NPTConfig, n_folds: int):
        super().__init__()
        self.folds = nn.ModuleList(NPT(config) for _ in range(n_folds))

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [fold(values[k], mask[k]) for k, fold in enumerate(self.folds)]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
