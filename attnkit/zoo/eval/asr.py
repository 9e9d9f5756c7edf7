"""Speech recognition: WER/CER (jiwer), the pocketsphinx baseline, the cross-attention picture, and
transcribing audio of any length with a recogniser made for clips of a few seconds.

pocketsphinx 5 ships CMU's en-us acoustic model, a general trigram LM and the CMU dictionary; it decodes
the first held-out 16 kHz clips with its general LM (what it does out of the box). `words=` restricts it to
a JSGF grammar looping over given words instead; on CPU that is several times slower still.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from attnkit.nn.modes import model_device
from attnkit.zoo.plots import save_figure


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate over the corpus: (substitutions + deletions + insertions) / reference words."""
    import jiwer

    return float(jiwer.wer(list(refs), [h if h.strip() else "" for h in hyps]))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    import jiwer

    return float(jiwer.cer(list(refs), list(hyps)))


def pocketsphinx_transcribe(waves: Sequence[np.ndarray], words: Sequence[str] | None = None,
                            progress=None) -> list[str]:
    """16 kHz float waveforms → pocketsphinx transcripts. words: restrict it to a loop over these words."""
    import tempfile

    from pocketsphinx import Decoder

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {}
        if words is not None:
            grammar = Path(tmp) / "words.gram"
            alternatives = " | ".join(sorted(set(words)))
            grammar.write_text(f"#JSGF V1.0;\ngrammar words;\npublic <utt> = ( {alternatives} )+ ;\n")
            kwargs["jsgf"] = str(grammar)
        decoder = Decoder(samprate=16000, loglevel="FATAL", **kwargs)
        out = []
        for i, wave in enumerate(waves):
            decoder.start_utt()
            decoder.process_raw((np.clip(wave, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            out.append(" ".join(w for w in (hyp.hypstr if hyp else "").split() if not w.startswith("<")))
            if progress:
                progress(i + 1)
    return out


def pocketsphinx_baseline(refs: Sequence[str], waves: Sequence[np.ndarray]) -> dict[str, float]:
    """pocketsphinx's WER and CER on 16 kHz clips and the seconds it took, with its general LM only: the word-loop
    grammar (`pocketsphinx_transcribe(words=...)`) is several times slower still on CPU."""
    t0 = time.perf_counter()
    hyps = pocketsphinx_transcribe(waves)
    return {"wer": wer(refs, hyps), "cer": cer(refs, hyps), "seconds": time.perf_counter() - t0}


@torch.no_grad()
def cross_attention(model, mel: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Cross-attention probabilities of every decoder layer while teacher-forcing `tokens` (BOS first):
    (n_dec_layer, H, Lt, frames'), computed from each layer's own query and key projections by
    `attnkit.ops.attention_probs` (captured with forward hooks; the model itself is not changed)."""
    from attnkit.ops import attention_probs

    captured: list[tuple] = []
    def capture(mod, args, kwargs):  # MultiHeadAttention(x, context=None, *, key_padding_mask=None, ...)
        context = kwargs["context"] if "context" in kwargs else args[1]
        captured.append((mod, args[0], context, kwargs.get("key_padding_mask")))

    hooks = [layer.cross_attn.register_forward_pre_hook(capture, with_kwargs=True) for layer in model.decoder]
    try:
        model(mel, torch.tensor([tokens], device=mel.device))
    finally:
        for h in hooks:
            h.remove()
    probs = []
    for mod, x, context, mask in captured:
        H = mod.n_head
        q = mod.q_proj(x).unflatten(-1, (H, -1)).transpose(1, 2)                      # (1, H, Lt, hd)
        k = mod.kv_proj(context).chunk(2, dim=-1)[0].unflatten(-1, (mod.n_kv_head, -1)).transpose(1, 2)
        probs.append(attention_probs(q, k, key_padding_mask=mask)[0])                # (H, Lt, Lk)
    return torch.stack(probs)


def attention_picture(model, mel: np.ndarray, tokens: list[int], labels: list[str], out: str | Path,
                      title: str) -> Path:
    """The cross-attention of `tokens` (BOS first; `labels` name the predicted ones, EOS included) over one log-mel
    clip (n_mels, T), averaged over layers and heads and drawn under the clip (`plot_attention`)."""
    probs = cross_attention(model, torch.from_numpy(mel)[None].to(model_device(model)), tokens)  # (layers, H, Lt, T')
    return plot_attention(mel, probs.mean(dim=(0, 1)).cpu().numpy(), labels, out, title,
                          subsample=model.cfg.subsample)


def transcribe_long(waves: Sequence[np.ndarray], transcribe: Callable[[list[np.ndarray]], list[str]],
                    piece_seconds: float) -> list[str]:
    """16 kHz waveforms of any length → transcripts. A wave longer than piece_seconds is cut at its quietest
    moments (`attnkit.zoo.data.segment`); `transcribe` gets the log-mels of all pieces of all waves in one call,
    and each wave's non-empty piece transcripts are joined by spaces."""
    from attnkit.zoo.data.logmel import log_mel
    from attnkit.zoo.data.segment import split_at_silences

    pieces, owner = [], []
    for i, wave in enumerate(waves):
        for a, b in split_at_silences(wave, piece_seconds):
            pieces.append(log_mel(wave[a:b]).numpy())
            owner.append(i)
    joined: list[list[str]] = [[] for _ in waves]
    for i, text in zip(owner, transcribe(pieces)):
        if text.strip():
            joined[i].append(text.strip())
    return [" ".join(t) for t in joined]


def plot_attention(mel: np.ndarray, probs: np.ndarray, labels: list[str], out: str | Path, title: str = "",
                   subsample: int = 2) -> Path:
    """Log-mel (top) above the decoder's cross-attention (head- and layer-mean) from each output character
    to the encoder positions (bottom, stretched ×subsample back to mel frames); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    frames = mel.shape[1]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 2.2 + 0.16 * len(labels)), dpi=110, sharex=True,
                                   gridspec_kw=dict(height_ratios=[1.2, max(1.0, 0.09 * len(labels))]))
    ax1.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, frames / 100, 0, mel.shape[0]))
    ax1.set_ylabel("mel bin")
    ax1.set_title(title)
    ax2.imshow(probs, aspect="auto", cmap="viridis", interpolation="nearest",
               extent=(0, probs.shape[1] * subsample / 100, len(labels) - 0.5, -0.5))
    ax2.set_yticks(range(len(labels)), [repr(c)[1:-1] if c != " " else "␣" for c in labels], fontsize=7)
    ax2.set_ylabel("output character")
    ax2.set_xlabel("time (s)")
    fig.tight_layout()
    return save_figure(fig, out)
