"""Music Transformer on Bach chorales: next-token prediction over the raster-scanned 4-voice grid.

Data: `attnkit.zoo.data.chorales` (music21's corpus, parsed once and cached). `--data chorales` (all 371
numbers) or `chorales:N` (the first N, what the debug flavor uses so tests parse a handful).
`--position absolute|relative|both` picks the arm of the paper's comparison (see attnkit.zoo.models.music).

Training windows start on a time-step boundary (a multiple of 4 tokens into [BOS, S0, A0, T0, B0, ...]),
so token k of every window is the same voice: the absolute arm can read the voice off its position
exactly as the relative arm reads it off distances, and neither gets an unfair start.

`attnkit sample --run DIR` continues a primer (a progress bar over the new tokens) and writes MIDI + piano roll
(+ attention heatmap):
    --prompt            (default) the first 32 steps (2 bars of 4/4) of held-out chorale 0
    --prompt test:K     held-out (test split) chorale K;  test:K:S  its first S steps
    --prompt scratch    from BOS alone
    --prompt FILE       a 4-part MusicXML / MIDI / kern file (its first 32 steps; FILE:S for S steps)
--max-new-tokens is rounded up to whole time steps (4 tokens); BOS, EOS and PAD are never sampled, so
the piece has exactly primer + new steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data import chorales as ch
from attnkit.zoo.data.primers import primer_grid
from attnkit.zoo.eval.music import length_rows, mean_nll, sample_rows, window_batch
from attnkit.zoo.models.music import MusicConfig, MusicTransformer
from attnkit.zoo.plots import plot_attention, plot_piano_roll
from attnkit.errors import UserError
from attnkit.fsio import atomic_write
from attnkit.nn.modes import direct_calls, model_device
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import MusicSampleOptions

PRIMERS_FILE = "music_primers.json"


# ---- sampling helpers ----------------------------------------------------------------------------------
@torch.no_grad()
def sample_tokens(model: MusicTransformer, prefix: list[int], n_new: int, *, window: int, temperature: float,
                  top_k: int | None, top_p: float | None, generator: torch.Generator,
                  on_token=None) -> list[int]:
    """Continue prefix (starting with BOS) by n_new grid tokens with a KV cache, on `attnkit.generation.decode`.

    Two hooks make it music: BOS/EOS/PAD are banned, so the piece has exactly the requested length, and
    when the context is full it restarts on a time-step boundary (a multiple of 4 into the sequence),
    keeping the voice phase the model was trained with. Runs in the model's mode (`attnkit sample`: eval).
    """
    from attnkit.generation.decode import SlidingWindow, ban, decode_n_tokens, sampling
    from attnkit.generation.generate import lm_step

    device = model_device(model)
    processors, choose = sampling(temperature, top_k, top_p, generator)
    max_len = min(window, len(prefix) + n_new)  # the most tokens a window holds
    with direct_calls(model):  # a token per step: skip nn.Module's per-call overhead
        seq = decode_n_tokens(lm_step(model), torch.tensor([prefix], device=device), n_new,
                              new_caches=lambda: model.make_caches(max_len),
                              processors=[ban([ch.PAD, ch.BOS, ch.EOS]), *processors],
                              choose=choose, window=SlidingWindow(window, align=4, restart_at_full=True),
                              on_token=None if on_token is None else lambda tok, logits: on_token(int(tok[0, 0])))
    return seq[0].tolist()


def _aligned_start(n: int, keep: int) -> int:
    """Smallest multiple of 4 that leaves at most `keep` of n tokens in the window."""
    from attnkit.generation.decode import SlidingWindow
    return SlidingWindow(keep, align=4).first(n)


@dataclass
class MusicOptions:
    """The arm of the paper's comparison (attnkit.zoo.models.music)."""
    position: str = field(default="relative", metadata={"help": "positions: absolute, relative (Music Transformer) or both"})


class MusicTask(Task):
    name = "music"
    default_flavor = "small"
    Options = MusicOptions
    flavors = {
        # Seconds on one core; 12 chorales so tests parse little (numbers 1..12: train, val and test).
        "debug": Flavor(model=dict(n_layer=2, n_head=2, d_model=32, max_relative_fraction=0.5),
                        train=dict(data="chorales:12", max_steps=20, batch_size=4, block_size=64, lr=3e-3,
                                   warmup_steps=2, eval_interval=10, eval_batches=2, dropout=0.0, beta2=0.99),
                        options=dict(position="relative")),
        # 0.17 M params. About 4 min per 400 steps on one CPU core (relative; absolute is ~2x faster on CPU,
        # where the relative op runs in torch): benchmarks/music_compare.py trains both arms for 400 steps.
        # max_relative_fraction 0.5: 64 learned distances, farther keys share the last embedding, which is
        # then trained on distances 63..127 (not just 127), so windows longer than training stay in range.
        "small": Flavor(model=dict(n_layer=3, n_head=4, d_model=64, max_relative_fraction=0.5),
                        train=dict(data="chorales", max_steps=2000, batch_size=16, block_size=128, lr=2e-3,
                                   min_lr=2e-4, warmup_steps=100, eval_interval=200, eval_batches=10,
                                   dropout=0.1, beta2=0.98),
                        options=dict(position="relative")),
    }

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        self.seqs: dict[str, list[np.ndarray]] = {}
        self.numbers: dict[str, list[int]] = {}
        self.primers: list[dict[str, Any]] = []

    # ---- configuration -------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        if self.opts.position not in ("absolute", "relative", "both"):
            raise UserError(f"the music model supports position absolute, relative or both, "
                            f"got {self.opts.position!r}")
        if self.cfg.block_size % 4:
            raise UserError(f"--block-size must be a multiple of 4 (one time step = 4 voices), "
                            f"got {self.cfg.block_size}")
        model = dict(self.flavor.model)
        # Learned distances 0..R-1 with R a fraction of the training window (default 1 = the paper's R = L).
        fraction = model.pop("max_relative_fraction", 1.0)
        return dict(model, vocab_size=ch.VOCAB_SIZE, block_size=self.cfg.block_size,
                    dropout=self.cfg.dropout or 0.0, position=self.opts.position,
                    max_relative=max(1, int(self.cfg.block_size * fraction)))

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return MusicTransformer(MusicConfig(**model_config))

    # ---- training ------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> None:
        self.model_config()  # validate --position / --block-size before the slow part
        splits = ch.corpus_splits(ch.parse_data_spec(self.cfg.data))  # parsing progress on stderr
        for split, chorales in splits.items():
            if not chorales:
                raise UserError(f"the {split} split of --data {self.cfg.data} is empty; use more chorales")
            self.seqs[split] = [ch.grid_to_tokens(c.grid) for c in chorales]
            self.numbers[split] = [c.number for c in chorales]
        self.primers = [{"number": c.number, "name": c.name, "grid": c.grid.tolist()} for c in splits["test"]]
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / PRIMERS_FILE, json.dumps({  # every DDP rank writes the same file
            "encoding": {"version": ch.CACHE_VERSION, "vocab_size": ch.VOCAB_SIZE, "voices": list(ch.VOICES),
                         "steps_per_quarter": ch.STEPS_PER_QUARTER, "specials": ch.SPECIAL_NAMES,
                         "lowest_midi": ch.LOWEST},
            "splits": self.numbers,
            "test": self.primers}))

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Random windows of block_size tokens starting on a time step; chorales weighted by length."""
        seqs, L = self.seqs[split], self.cfg.block_size
        n_starts = torch.tensor([max(0, len(s) - 1 - L) // 4 + 1 for s in seqs], dtype=torch.float)
        which = torch.multinomial(n_starts, batch_size, replacement=True, generator=generator)  # (B,)
        u = torch.rand(batch_size, generator=generator)  # (B,)
        starts = [4 * int(u[b] * n_starts[which[b]]) for b in range(batch_size)]
        return window_batch([seqs[int(i)] for i in which], starts, L)  # x, y: (B, L)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, loss = model(batch["x"], batch["y"], label_smoothing=self.cfg.label_smoothing or 0.0)
        return loss

    def length_nll(self, model: nn.Module, split: str, device: torch.device,
                   multiples=(1, 2, 4)) -> dict[int, float]:
        """Exact NLL per token of `split` with windows of 1x, 2x, 4x the training length."""
        return {m * self.cfg.block_size: mean_nll(model, self.seqs[split], m * self.cfg.block_size, device)
                for m in multiples}

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        L = self.cfg.block_size
        by_length = self.length_nll(model, "val", model_device(model))
        report = Report({"val_nll": by_length[L], "val_nll_by_length": {str(k): v for k, v in by_length.items()}})
        report.table(f"music ({model.config.position} positions): exact validation NLL per token "
                     f"({sum(len(s) - 1 for s in self.seqs['val'])} tokens, {len(self.seqs['val'])} chorales)",
                     ["eval window", "NLL (nats/token)"], length_rows(by_length, L))
        return report

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "MusicTask":
        path = Path(run_dir) / PRIMERS_FILE
        if not path.is_file():
            raise UserError(f"{path} is missing: is {run_dir} a run written by `attnkit train --model music`?")
        task = cls(cfg)
        task.primers = json.loads(path.read_text())["test"]
        return task

    SampleOptions = MusicSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Continue a primer by --max-new-tokens (rounded up to whole steps); write MIDI and piano roll."""
        o = self.sample_options(cfg)
        primer, source = primer_grid(o.prompt, self.primers)
        n_new = 4 * math.ceil(max(cfg.max_new_tokens, 0) / 4)
        out_dir = Path(cfg.out or cfg.run)
        out_dir.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(cfg.seed)  # on CPU: the same piece on every device
        window = model.config.block_size
        report = Report({"samples": []})
        for i in range(cfg.num_samples):
            prefix = ch.grid_to_tokens(primer, eos=False).tolist()
            seq = sample_tokens(model, prefix, n_new, window=window, temperature=cfg.temperature,
                                top_k=cfg.top_k, top_p=o.top_p, generator=generator,
                                on_token=self._composing(i, cfg.num_samples, n_new))
            grid = ch.tokens_to_grid(seq)
            stem = out_dir / (f"music_sample_{i}" if cfg.num_samples > 1 else "music_sample")
            title = f"attnkit music ({model.config.position}), seed {cfg.seed}"
            midi = ch.write_midi(grid, stem.with_suffix(".mid"), title=title)
            roll = plot_piano_roll(grid, stem.with_name(stem.name + "_roll.png"), len(primer),
                                   title=f"{title}\n{source} + {n_new // 4} generated steps")
            result = {"midi": str(midi), "piano_roll": str(roll), "steps": len(grid), "primer_steps": len(primer),
                      "quarters": len(grid) / ch.STEPS_PER_QUARTER, "tokens": seq}
            rng = ch.pitch_range(grid)
            result["pitch_range"] = list(rng) if rng else None
            if o.attention_png:
                result["attention_png"] = str(self._attention_png(model, seq, stem.with_name(stem.name + "_attention.png")))
            report.metrics["samples"].append(result)
            report.table("music sample", ["what", "value"], sample_rows(result, source))
        return report

    def _composing(self, i: int, n_samples: int, n_new: int):
        """sample_tokens' on_token hook for piece i: one bar over the new tokens of every piece, or None."""
        if self.progress is None:
            return None
        what = f"composing {n_new // 4} steps" + (f" × {n_samples} pieces" if n_samples > 1 else "")
        done = itertools.count(i * n_new + 1)  # tokens composed so far, this one included
        return lambda token: self.progress(what, next(done), n_samples * n_new)

    def _attention_png(self, model: MusicTransformer, seq: list[int], path: Path) -> Path:
        """Last layer's heads over the last training-length window of the piece (step-aligned)."""
        start = _aligned_start(len(seq), model.config.block_size)
        idx = torch.tensor([seq[start:]], device=model_device(model))
        maps = model.attention_maps(idx, layer=-1)[0]  # (H, L, L)
        layer = model.config.n_layer - 1
        return plot_attention(maps, path, layer, offset=start,
                              title=f"layer {layer} attention over tokens {start}..{len(seq) - 1} "
                                    f"({model.config.position} positions)")
