"""A Whisper-style speech recogniser (Radford et al. 2022): log-mel frames in, characters out.

Built bottom-up: ConvStem → ASRConfig → ASR. The encoder is Whisper's: two conv1d + GELU layers (the
second with stride 2, so 100 frames/s become 50 positions/s; `subsample=4` adds a third with stride 2, 25
positions/s, half the encoder's attention and MLP work), sinusoidal positions, then the zoo's
encoder stack (the shared `attnkit.nn.blocks.Block`, pre-LN, GELU). The decoder is the zoo's decoder
stack (causal self-attention → cross-attention over the encoder output → ReLU MLP) with learned positions
and a `LayerCache` per block, so `attnkit.generation.beam.greedy_decode` / `beam_search` decode it unchanged: it is
an `attnkit.zoo.models.encdec.EncoderDecoder`, like `EncDec`.

`ctc_head=True` adds a linear CTC head on the encoder output (hybrid CTC/attention, Watanabe et al. 2017):
`ctc_log_probs` gives per-position log-probabilities over the vocabulary with `pad_id` as CTC's blank.

Input: mel (B, n_mels, T) from `attnkit.zoo.data.logmel.log_mel`, a batch of clips padded on the right with
`PAD_FRAME` (a value log-mel never takes; `pad_frames` makes such a batch), which `encode` turns into the
encoder's key-padding mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.blocks import LayerCache
from attnkit.nn.init import init_weights
from attnkit.zoo.models.encdec import EncoderDecoder, decoder_stack, encoder_stack, sinusoidal_positions

PAD_FRAME = -100.0  # log-mel values lie in [(peak - 4) / 4, (peak + 4) / 4] with peak ≥ -10


def pad_frames(clips: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Log-mel clips (n_mels, T_i) → one batch mel (B, n_mels, max T_i), padded on the right with PAD_FRAME."""
    mel = torch.full((len(clips), clips[0].shape[0], max(c.shape[1] for c in clips)), PAD_FRAME)
    for b, clip in enumerate(clips):
        mel[b, :, :clip.shape[1]] = torch.as_tensor(clip)
    return mel


class ConvStem(nn.Module):
    """conv1d(k=3) + GELU, then log2(subsample) × [conv1d(k=3, stride 2) + GELU]:
    (B, n_mels, T) → (B, ceil(T / subsample), d).

    Padded frames are zeroed before each conv, so a clip gives the same output alone as in a padded batch
    (the convs' own zero padding at the clip's end is what the next clip's padding looks like)."""

    def __init__(self, n_mels: int, d_model: int, subsample: int = 2):
        super().__init__()
        if subsample not in (2, 4):
            raise ValueError(f"subsample must be 2 or 4, got {subsample}")
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1) if subsample == 4 else None

    def forward(self, mel: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        # mel: (B, n_mels, T); real: (B, T) bool, True = a frame of the clip
        keep = real[:, None].to(mel.dtype)                  # (B, 1, T)
        x = F.gelu(self.conv1(mel * keep)) * keep          # (B, d, T)
        x = F.gelu(self.conv2(x))                          # (B, d, ceil(T / 2))
        if self.conv3 is not None:
            x = x * real[:, None, ::2].to(x.dtype)          # output j of conv2 is centred on frame 2j
            x = F.gelu(self.conv3(x))                      # (B, d, ceil(T / 4))
        return x.transpose(1, 2)           # (B, T', d)


@dataclass
class ASRConfig:
    vocab_size: int = 32
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    n_mels: int = 80
    max_frames: int = 3000      # longest input in mel frames (30 s, Whisper's window)
    max_len: int = 128          # longest transcript in tokens, BOS/EOS included
    n_enc_layer: int = 4
    n_dec_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int = 1024
    dropout: float = 0.0
    subsample: int = 2          # mel frames per encoder position: 2 (Whisper) or 4
    ctc_head: bool = False      # a CTC head on the encoder (hybrid CTC/attention)


class ASR(EncoderDecoder):
    """Encoder over log-mel frames, character decoder with cross-attention; `forward(mel, tokens)` is
    teacher-forced (`EncoderDecoder`)."""

    def __init__(self, cfg: ASRConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.stem = ConvStem(cfg.n_mels, d, cfg.subsample)
        self.register_buffer("enc_pe", sinusoidal_positions(-(-cfg.max_frames // cfg.subsample), d),
                             persistent=False)
        self.encoder = encoder_stack(cfg.n_enc_layer, d, cfg.n_head, cfg.d_ff, cfg.dropout, pre_ln=True,
                                     activation="gelu")
        self.enc_norm = nn.LayerNorm(d)
        self.tok_embed = nn.Embedding(cfg.vocab_size, d)
        self.dec_pe = nn.Embedding(cfg.max_len, d)
        self.decoder = decoder_stack(cfg.n_dec_layer, d, cfg.n_head, cfg.d_ff, cfg.dropout, pre_ln=True)
        self.dec_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ctc_head = nn.Linear(d, cfg.vocab_size) if cfg.ctc_head else None
        self.apply(init_weights)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_embed.weight  # Whisper ties the output layer to the token embedding

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T), padded with PAD_FRAME → memory (B, T', d), T' = ceil(T / subsample), and its
        mask, True = real."""
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"mel must be (B, {self.cfg.n_mels}, T), got {tuple(mel.shape)}")
        if mel.shape[2] > self.cfg.max_frames:
            raise ValueError(f"{mel.shape[2]} frames is longer than max_frames={self.cfg.max_frames}")
        real = mel[:, 0] != PAD_FRAME                                   # (B, T)
        x = self.stem(mel, real)                                        # (B, T', d)
        mask = real[:, ::self.cfg.subsample]                            # (B, T'): output j is centred on frame s·j
        x = self.dropout(x + self.enc_pe[: x.shape[1]])
        x = self.encoder(x, key_padding_mask=mask)                     # (B, T', d)
        return self.enc_norm(x), mask

    def ctc_log_probs(self, memory: torch.Tensor) -> torch.Tensor:
        """memory (B, T', d) from `encode` → CTC log-probabilities (B, T', V); blank is `cfg.pad_id`."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (ctc_head=False)")
        return self.ctc_head(memory).float().log_softmax(-1)

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, mem_mask: torch.Tensor,
               caches: list[LayerCache] | None = None) -> torch.Tensor:
        """tokens (B, Lt) (BOS first; only the new ones with caches) → logits (B, Lt, V)."""
        offset = caches[0].length if caches else 0
        Lt = tokens.shape[1]
        if offset + Lt > self.cfg.max_len:
            raise ValueError(f"transcript of {offset + Lt} tokens is longer than max_len={self.cfg.max_len}")
        pos = torch.arange(offset, offset + Lt, device=tokens.device)
        y = self.dropout(self.tok_embed(tokens) + self.dec_pe(pos))    # (B, Lt, d)
        y = self.decoder(y, context=memory, context_mask=mem_mask, caches=caches)  # (B, Lt, d)
        return self.lm_head(self.dec_norm(y))                           # (B, Lt, V)
