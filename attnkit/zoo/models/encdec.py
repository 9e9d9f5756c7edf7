"""The encoder-decoder Transformer of Vaswani et al. 2017, "Attention Is All You Need".

Built bottom-up: sinusoidal positions → encoder / decoder stacks of the zoo's shared `Block`
(attnkit.nn.blocks, ReLU MLP, cross-attention in the decoder) → EncDecConfig → EncDec.
Both layer orders are available: post-LN (the paper: x = LN(x + sublayer(x))) and pre-LN
(x = x + sublayer(LN(x)), with a final LN; trains without warmup tricks and is the usual modern choice).
With a shared source/target vocabulary the source embedding, target embedding and output projection are
one matrix (paper §3.4). Every attention goes through `attnkit.nn.layers.MultiHeadAttention`, hence
`attnkit.attention`: the encoder masks padded source keys, the decoder is causal, cross-attention reads
the encoder's output via `context=`, and decoding keeps a `LayerCache` per decoder layer (see `attnkit.generation.beam`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from attnkit.nn.blocks import LayerCache, Stack, old_names_hook

DecoderCache = LayerCache  # the old name


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """(length, d_model): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]                               # (L, 1)
    inv = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv[: d_model // 2])
    return pe.float()


# Checkpoints written before the zoo shared one block (issue 13) used these layer-internal names.
_FFN = [(r"^(\d+)\.ffn\.fc1\.", r"\1.mlp.fc."), (r"^(\d+)\.ffn\.fc2\.", r"\1.mlp.proj.")]
OLD_ENCODER_NAMES = [(r"^(\d+)\.res1\.norm\.", r"\1.ln_1."), (r"^(\d+)\.res2\.norm\.", r"\1.ln_2."), *_FFN]
OLD_DECODER_NAMES = [(r"^(\d+)\.self_attn\.", r"\1.attn."), (r"^(\d+)\.res1\.norm\.", r"\1.ln_1."),
                     (r"^(\d+)\.res2\.norm\.", r"\1.ln_cross."), (r"^(\d+)\.res3\.norm\.", r"\1.ln_2."), *_FFN]


def encoder_stack(n_layer: int, d_model: int, n_head: int, d_ff: int, dropout: float, pre_ln: bool,
                  activation: str = "relu", position: str = "none") -> Stack:
    """The paper's encoder: bidirectional self-attention (padded keys masked) then the FFN, dropout on each
    sublayer's output and after the FFN's activation. Also BERT's encoder (activation="gelu"; position="rotary"
    for rotary positions inside attention instead of learned ones added to the embeddings)."""
    stack = Stack(n_layer, d_model, n_head, d_ff=d_ff, pre_ln=pre_ln, activation=activation, dropout=dropout,
                  inner_dropout=dropout, position=position)
    stack.register_load_state_dict_pre_hook(old_names_hook(OLD_ENCODER_NAMES))
    return stack


def decoder_stack(n_layer: int, d_model: int, n_head: int, d_ff: int, dropout: float, pre_ln: bool) -> Stack:
    """The paper's decoder: causal self-attention → cross-attention over the encoder output → FFN."""
    stack = Stack(n_layer, d_model, n_head, d_ff=d_ff, causal=True, cross=True, pre_ln=pre_ln, activation="relu",
                  dropout=dropout, inner_dropout=dropout)
    stack.register_load_state_dict_pre_hook(old_names_hook(OLD_DECODER_NAMES))
    return stack


class EncoderDecoder(nn.Module):
    """What `attnkit.generation.beam` decodes: a subclass defines `encode(inputs) -> (memory, mask)` and
    `decode(tokens, memory, mask, caches)`, a `decoder` Stack and `cfg.{pad,bos,eos}_id`. Also ASR's base."""

    decoder: Stack

    def new_caches(self, max_len: int | None = None) -> list[LayerCache]:
        """The decoder's caches; max_len: the most target tokens decoding feeds it (see `Stack.make_caches`)."""
        return self.decoder.make_caches(max_len)

    def forward(self, inputs: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: inputs (source ids (B, Ls) or frames), tgt_in (B, Lt) → next-token logits (B, Lt, V)."""
        memory, mask = self.encode(inputs)
        return self.decode(tgt_in, memory, mask)


@dataclass
class EncDecConfig:
    src_vocab_size: int = 64
    tgt_vocab_size: int = 64
    shared_vocab: bool = True   # one vocabulary: tie source embedding, target embedding and output layer
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_len: int = 256          # longest source or target the sinusoid table covers
    n_enc_layer: int = 6
    n_dec_layer: int = 6
    n_head: int = 8
    d_model: int = 512
    d_ff: int = 2048
    dropout: float = 0.1
    pre_ln: bool = False        # False = the paper's post-LN; True = pre-LN (adds final LayerNorms)


class EncDec(EncoderDecoder):
    """Transformer (base) for sequence-to-sequence; `forward` is teacher-forced, `attnkit.generation.beam` decodes."""

    def __init__(self, cfg: EncDecConfig):
        super().__init__()
        if cfg.shared_vocab and cfg.src_vocab_size != cfg.tgt_vocab_size:
            raise ValueError("shared_vocab needs src_vocab_size == tgt_vocab_size")
        self.cfg = cfg
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.src_embed = self.tgt_embed if cfg.shared_vocab else \
            nn.Embedding(cfg.src_vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.register_buffer("pe", sinusoidal_positions(cfg.max_len, cfg.d_model), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = encoder_stack(cfg.n_enc_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, cfg.pre_ln)
        self.decoder = decoder_stack(cfg.n_dec_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout, cfg.pre_ln)
        # Pre-LN leaves the residual stream un-normalised, so each stack ends with a LayerNorm.
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_ln else nn.Identity()
        self.dec_norm = nn.LayerNorm(cfg.d_model) if cfg.pre_ln else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)
        self.apply(self._init_weights)
        self.lm_head.weight = self.tgt_embed.weight  # paper §3.4: embeddings and pre-softmax layer share weights

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=self.cfg.d_model ** -0.5)  # × sqrt(d) in _embed → unit scale
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        L = ids.shape[1]
        if offset + L > self.cfg.max_len:
            raise ValueError(f"sequence of {offset + L} tokens is longer than max_len={self.cfg.max_len}")
        x = table(ids) * math.sqrt(self.cfg.d_model) + self.pe[offset:offset + L]  # (B, L, d)
        return self.dropout(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, Ls) ids → memory (B, Ls, d) and src_mask (B, Ls), True = real token."""
        src_mask = src != self.cfg.pad_id
        x = self.encoder(self._embed(self.src_embed, src), key_padding_mask=src_mask)  # (B, Ls, d)
        return self.enc_norm(x), src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor,
               caches: list[LayerCache] | None = None) -> torch.Tensor:
        """tgt_in: (B, Lt) ids (BOS first) → logits (B, Lt, V). With caches, tgt_in holds only new tokens."""
        offset = caches[0].length if caches else 0
        y = self._embed(self.tgt_embed, tgt_in, offset)  # (B, Lt, d)
        y = self.decoder(y, context=memory, context_mask=src_mask, caches=caches or None)  # (B, Lt, d)
        return self.lm_head(self.dec_norm(y))  # (B, Lt, V)
