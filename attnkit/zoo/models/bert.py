"""BERT: a bidirectional Transformer encoder pre-trained as a masked language model (Devlin et al. 2018).

Built bottom-up: mask_tokens (the 80/10/10 corruption) → Embeddings (token + learned position + segment,
LayerNorm; with position="rotary" no learned position, rotary embeddings inside attention instead) → the encoder stack of `attnkit.zoo.models.encdec` (the zoo's shared Block, post-LN as in BERT, GELU) → MLMHead (transform,
then the tied embedding matrix) → optional next-sentence head (tanh pooler on [CLS]) → BERTConfig → BERT. Padded keys are masked
through `attnkit.nn.layers.MultiHeadAttention`'s key_padding_mask, i.e. `attnkit.attention`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.zoo.models.encdec import encoder_stack
from attnkit.nn.init import init_weights

IGNORE = -100  # label of positions that are not predicted
POSITIONS = ("learned", "rotary")


def mask_tokens(ids: torch.Tensor, *, maskable: torch.Tensor, mask_id: int, random_ids: torch.Tensor,
                generator: torch.Generator | None = None, mask_prob: float = 0.15
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption. Each maskable token is selected with probability mask_prob; a selected token
    becomes [MASK] with probability 0.8, a uniformly random token from `random_ids` with 0.1, and stays
    itself with 0.1. The model must predict every selected token.

    ids: (B, L) long; maskable: (B, L) bool (False for [CLS], [SEP], [PAD]); random_ids: (R,) candidates.
    Returns (inputs (B, L), labels (B, L)) with labels = ids where selected, IGNORE elsewhere.
    """
    u = torch.rand(ids.shape, generator=generator, device=ids.device)         # selection
    v = torch.rand(ids.shape, generator=generator, device=ids.device)         # what the selected become
    pick = torch.randint(len(random_ids), ids.shape, generator=generator, device=ids.device)
    selected = (u < mask_prob) & maskable
    labels = torch.where(selected, ids, IGNORE)
    inputs = torch.where(selected & (v < 0.8), mask_id, ids)
    inputs = torch.where(selected & (v >= 0.8) & (v < 0.9), random_ids.to(ids.device)[pick], inputs)
    return inputs, labels


@dataclass
class BERTConfig:
    vocab_size: int = 2000
    block_size: int = 128       # longest input, [CLS] and [SEP]s included
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int = 1024
    dropout: float = 0.1
    pad_id: int = 0
    n_segments: int = 2         # segment (token type) embeddings: A and B
    nsp: bool = False           # also train next-sentence prediction on [CLS]
    pre_ln: bool = False        # BERT is post-LN
    position: str = "learned"   # learned (BERT: added to the embeddings) | rotary (RoFormer: inside attention)

    def __post_init__(self):
        if self.position not in POSITIONS:
            raise ValueError(f"BERT position must be one of {POSITIONS}, got {self.position!r}")


class Embeddings(nn.Module):
    def __init__(self, cfg: BERTConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.position == "learned" else None
        self.seg = nn.Embedding(cfg.n_segments, cfg.d_model)
        self.norm, self.dropout = nn.LayerNorm(cfg.d_model), nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor:
        B, L = ids.shape
        x = self.tok(ids)  # (B, L, d)
        if self.pos is not None:
            x = x + self.pos(torch.arange(L, device=ids.device))
        # No segments given means a single segment A (id 0), as in BERT.
        x = x + (self.seg(segments) if segments is not None else self.seg.weight[0])
        return self.dropout(self.norm(x))


class MLMHead(nn.Module):
    """Dense → GELU → LayerNorm → logits through the (tied) token embedding, plus a per-token bias."""

    def __init__(self, cfg: BERTConfig, embedding: nn.Embedding):
        super().__init__()
        self.dense, self.norm = nn.Linear(cfg.d_model, cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(h)))  # (N, d)
        return h @ self.embedding.weight.T + self.bias  # (N, V)


class BERT(nn.Module):
    def __init__(self, cfg: BERTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.layers = encoder_stack(cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, cfg.pre_ln,
                                    activation="gelu", position="rotary" if cfg.position == "rotary" else "none")
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_ln else nn.Identity()
        self.mlm = MLMHead(cfg, self.embed.tok)
        if cfg.nsp:  # pooler (tanh dense on [CLS]) then a 2-way classifier: IsNext / NotNext
            self.pooler, self.nsp_head = nn.Linear(cfg.d_model, cfg.d_model), nn.Linear(cfg.d_model, 2)
        self.apply(init_weights)

    def encode(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """ids: (B, L) → hidden states (B, L, d); [PAD] keys are masked."""
        if ids.shape[1] > self.cfg.block_size:
            raise ValueError(f"input of {ids.shape[1]} tokens is longer than block_size={self.cfg.block_size}")
        pad_mask = ids != self.cfg.pad_id  # (B, L) True = real token
        if pad_mask.all():
            pad_mask = None  # no padding: lets attention take its unmasked fast path
        x = self.layers(self.embed(ids, segments), key_padding_mask=pad_mask)  # (B, L, d)
        return self.final_norm(x)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                is_next: torch.Tensor | None = None):
        """Without labels: MLM logits for every position, (B, L, V).

        With labels (B, L) (IGNORE where not predicted): a dict with the masked-LM cross-entropy "mlm" over
        the selected positions only (the head runs on those rows alone) and their "logits" (N, V) in
        row-major order; plus "nsp" and "nsp_logits" (B, 2) when the model has the NSP head and is_next (B,)
        is given (0 = IsNext, 1 = NotNext).
        """
        h = self.encode(ids, segments)  # (B, L, d)
        if labels is None:
            return self.mlm(h)  # (B, L, V)
        selected = labels != IGNORE
        logits = self.mlm(h[selected])  # (N, V)
        out = {"mlm": F.cross_entropy(logits.float(), labels[selected]), "logits": logits}
        if self.cfg.nsp and is_next is not None:
            nsp_logits = self.nsp_head(torch.tanh(self.pooler(h[:, 0])))  # (B, 2)
            out["nsp"] = F.cross_entropy(nsp_logits.float(), is_next)
            out["nsp_logits"] = nsp_logits
        return out


def inner_positions(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(N, L) ids [CLS] ... [SEP] [PAD]... → (N, L) bool, True on the passage's own tokens."""
    inner = ids != pad_id  # (N, L)
    last = inner.sum(1) - 1  # [SEP]
    inner[:, 0] = False  # [CLS]
    inner[torch.arange(len(ids), device=ids.device), last] = False
    return inner


POOLINGS = ("mean", "max", "cls", "surprise")


class BERTClassifier(nn.Module):
    """Sequence classification on a BERT encoder (pretrained, or fresh for a from-scratch arm), pooling its
    hidden states one of POOLINGS' ways:

    mean / max / cls: the mean or element-wise max of the real tokens' states (no [PAD]), or [CLS]'s, then a
        tanh pooler and a linear layer (BERT's classification head). Mean rather than BERT's [CLS] by default:
        without next-sentence prediction pretraining never trains [CLS] as a summary of the sequence;
    surprise: the MLM head's log-probability of each real token as it stands (unmasked), its minimum and mean
        over the passage, standardised (a BatchNorm without affine weights: the two numbers are on no fixed scale),
        then a linear layer: the head that pretraining trained, read as "does this token fit".
    """

    def __init__(self, encoder: BERT, n_classes: int, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        d = encoder.cfg.d_model
        self.encoder, self.pooling = encoder, pooling
        self.pooler = nn.Linear(d, d) if pooling != "surprise" else nn.BatchNorm1d(2, affine=False)
        self.head = nn.Linear(2 if pooling == "surprise" else d, n_classes)
        self.pooler.apply(init_weights)
        self.head.apply(init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L), [CLS] first, [SEP] after the last token, [PAD] after that → logits (B, n_classes)."""
        h = self.encoder.encode(ids)  # (B, L, d)
        real = ids != self.encoder.cfg.pad_id  # (B, L)
        if self.pooling == "surprise":
            logp = self.encoder.mlm(h).float().log_softmax(-1).gather(-1, ids[..., None])[..., 0]  # (B, L)
            inner = inner_positions(ids, self.encoder.cfg.pad_id)  # (B, L)
            lowest = logp.masked_fill(~inner, 0.0).min(1).values  # (B,)
            mean = (logp * inner).sum(1) / inner.sum(1)  # (B,)
            return self.head(self.pooler(torch.stack((lowest, mean), 1)))  # (B, n_classes)
        if self.pooling == "cls":
            pooled = h[:, 0]  # (B, d)
        elif self.pooling == "max":
            pooled = h.masked_fill(~real[..., None], float("-inf")).max(1).values  # (B, d)
        else:
            pooled = (h * real[..., None]).sum(1) / real.sum(1, keepdim=True)  # (B, d)
        return self.head(torch.tanh(self.pooler(pooled)))  # (B, n_classes)
