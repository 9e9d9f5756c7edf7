"""Music evaluation: exact per-token NLL of whole chorales, in windows of any length (so the absolute and
relative arms can be compared at and beyond their training length). Used by the music task and by
benchmarks/music_compare.py."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from attnkit.zoo.data import chorales as ch

IGNORE = -100  # target of padded positions


def window_batch(seqs: list[np.ndarray], starts: list[int], length: int) -> dict[str, torch.Tensor]:
    """Inputs seq[s:s+length] and next-token targets, padded with PAD / IGNORE: x, y (B, length)."""
    x = torch.full((len(seqs), length), ch.PAD, dtype=torch.long)
    y = torch.full((len(seqs), length), IGNORE, dtype=torch.long)
    for b, (seq, s) in enumerate(zip(seqs, starts)):
        chunk = torch.from_numpy(seq[s:s + length + 1])
        x[b, :len(chunk) - 1] = chunk[:-1]
        y[b, :len(chunk) - 1] = chunk[1:]
    return {"x": x, "y": y}


@torch.no_grad()
def token_nll(model: nn.Module, seqs: list[np.ndarray], length: int, device: torch.device,
              batch_size: int = 8) -> list[np.ndarray]:
    """Exact NLL of every token of `seqs`, cut into consecutive windows of `length` (a multiple of 4).

    Each token is predicted once, from the tokens before it in its window. Returns one (len(seq) - 1,)
    array per sequence (the NLL of seq[1:]), so windows of different lengths can be compared token by
    token: the same tokens with more context, or at positions an absolute model never trained on. Runs in the
    model's mode: callers evaluate in eval mode (the trainer's report does; benchmarks use attnkit.nn.modes.mode).
    """
    out = [np.zeros(len(seq) - 1) for seq in seqs]
    windows = [(i, s) for i, seq in enumerate(seqs) for s in range(0, len(seq) - 1, length)]
    for w in range(0, len(windows), batch_size):
        part = windows[w:w + batch_size]
        batch = window_batch([seqs[i] for i, _ in part], [s for _, s in part], length)
        x, y = batch["x"].to(device), batch["y"].to(device)
        logits, _ = model(x)  # (B, L, V)
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, ignore_index=IGNORE,
                                                reduction="none").cpu().numpy()  # (B, L)
        for b, (i, s) in enumerate(part):
            n = min(length, len(seqs[i]) - 1 - s)
            out[i][s:s + n] = nll[b, :n]
    return out


def mean_nll(model: nn.Module, seqs: list[np.ndarray], length: int, device: torch.device,
             batch_size: int = 8) -> float:
    """Mean NLL per token (nats) of all of `seqs`, with windows of `length` tokens (see token_nll)."""
    return float(np.concatenate(token_nll(model, seqs, length, device, batch_size)).mean())


def length_rows(by_length: dict[int, float], block_size: int) -> list[list]:
    """Rows (eval window, NLL) of the NLL-by-window-length table."""
    rows = []
    for length, nll in by_length.items():
        note = "= training length" if length == block_size else f"{length // block_size}x training length"
        rows.append([f"{length} tokens ({note})", f"{nll:.4f}"])
    return rows


def sample_rows(r: dict, source: str) -> list[list[str]]:
    """Rows (what, value) describing one sampled piece: primer, length, pitch range and its files."""
    from music21 import pitch

    rows = [["primer", source],
            ["length", f"{r['steps']} steps of a 16th = {r['quarters']:g} quarters "
                       f"({r['primer_steps']} primer + {r['steps'] - r['primer_steps']} generated)"]]
    if r["pitch_range"]:
        lo, hi = r["pitch_range"]
        rows.append(["pitch range", f"{pitch.Pitch(midi=lo).nameWithOctave}–{pitch.Pitch(midi=hi).nameWithOctave} "
                                    f"(MIDI {lo}–{hi})"])
    else:
        rows.append(["pitch range", "no notes (all rests)"])
    rows += [["MIDI", r["midi"]], ["piano roll", r["piano_roll"]]]
    if "attention_png" in r:
        rows.append(["attention", r["attention_png"]])
    return rows
