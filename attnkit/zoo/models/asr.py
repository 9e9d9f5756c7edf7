"""A Whisper-style speech recogniser (Radford et al. 2022): log-mel frames in, characters out.

Built bottom-up: ConvStem → ASRConfig → ASR. The encoder is Whisper's: two conv1d + GELU layers (the
second with stride 2, so 100 frames/s become 50 positions/s), sinusoidal positions, then the zoo's
encoder stack (the shared `attnkit.nn.blocks.Block`, pre-LN, GELU). The decoder is the zoo's decoder
stack (causal self-attention → cross-attention over the encoder output → ReLU MLP) with learned positions
and a `LayerCache` per block, so `attnkit.generation.beam.greedy_decode` / `beam_search` decode it unchanged: `encode`,
`decode`, `new_caches` and `cfg.{pad,bos,eos}_id` are the same contract as `EncDec`'s.

Input: mel (B, n_mels, T) from `attnkit.zoo.data.logmel.log_mel`, a batch of clips padded on the right with
`PAD_FRAME` (a value log-mel never takes), which `encode` turns into the encoder's key-padding mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.nn.blocks import LayerCache
from attnkit.nn.init import init_weights
from attnkit.zoo.models.encdec import decoder_stack, encoder_stack, sinusoidal_positions

PAD_FRAME = -100.0  # log-mel values lie in [(peak - 4) / 4, (peak + 4) / 4] with peak ≥ -10


class ConvStem(nn.Module):
    """conv1d(k=3) + GELU, conv1d(k=3, stride 2) + GELU: (B, n_mels, T) → (B, ceil(T / 2), d).

    Padded frames are zeroed before each conv, so a clip gives the same output alone as in a padded batch
    (the convs' own zero padding at the clip's end is what the next clip's padding looks like)."""

    def __init__(self, n_mels: int, d_model: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1)

    def forward(self, mel: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        # mel: (B, n_mels, T); real: (B, T) bool, True = a frame of the clip
        keep = real[:, None].to(mel.dtype)                  # (B, 1, T)
        x = F.gelu(self.conv1(mel * keep)) * keep          # (B, d, T)
        x = F.gelu(self.conv2(x))                          # (B, d, ceil(T / 2))
        return x.transpose(1, 2)           # (B, ceil(T / 2), d)


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


class ASR(nn.Module):
    """Encoder over log-mel frames, character decoder with cross-attention; `forward` is teacher-forced."""

    def __init__(self, cfg: ASRConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.stem = ConvStem(cfg.n_mels, d)
        self.register_buffer("enc_pe", sinusoidal_positions((cfg.max_frames + 1) // 2, d), persistent=False)
        self.encoder = encoder_stack(cfg.n_enc_layer, d, cfg.n_head, cfg.d_ff, cfg.dropout, pre_ln=True,
                                     activation="gelu")
        self.enc_norm = nn.LayerNorm(d)
        self.tok_embed = nn.Embedding(cfg.vocab_size, d)
        self.dec_pe = nn.Embedding(cfg.max_len, d)
        self.decoder = decoder_stack(cfg.n_dec_layer, d, cfg.n_head, cfg.d_ff, cfg.dropout, pre_ln=True)
        self.dec_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.apply(init_weights)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.tok_embed.weight  # Whisper ties the output layer to the token embedding

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T), padded with PAD_FRAME → memory (B, ceil(T/2), d) and its mask, True = real."""
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"mel must be (B, {self.cfg.n_mels}, T), got {tuple(mel.shape)}")
        if mel.shape[2] > self.cfg.max_frames:
            raise ValueError(f"{mel.shape[2]} frames is longer than max_frames={self.cfg.max_frames}")
        real = mel[:, 0] != PAD_FRAME                                   # (B, T)
        x = self.stem(mel, real)                                        # (B, T', d), T' = ceil(T / 2)
        mask = real[:, ::2]                                             # (B, T'): output j is centred on frame 2j
        x = self.dropout(x + self.enc_pe[: x.shape[1]])
        x = self.encoder(x, key_padding_mask=mask)                     # (B, T', d)
        return self.enc_norm(x), mask

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

    def new_caches(self) -> list[LayerCache]:
        return self.decoder.make_caches()

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: mel (B, n_mels, T), tokens (B, Lt) → next-token logits (B, Lt, V)."""
        memory, mask = self.encode(mel)
        return self.decode(tokens, memory, mask)
