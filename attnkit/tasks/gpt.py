"""GPT language modelling on text: the embedded corpus or --data, a char or sentencepiece tokenizer."""
from __future__ import annotations

from dataclasses import dataclass, field

import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from rich.console import Console

from attnkit.config import SampleConfig, TrainConfig
from attnkit.data.text import load_text
from attnkit.data.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer
from attnkit.models.gpt import GPT, PRESETS, GPTConfig
from attnkit.errors import UserError
from attnkit.tasks.base import Task

VAL_FRACTION = 0.1


@dataclass
class GPTOptions:
    position: str = field(default="learned", metadata={"help": "positions: learned (GPT-2) or rotary"})


class GPTTask(Task):
    name = "gpt"
    default_flavor = "demo"
    flavors = {
        # Trains in seconds on one core: for tests and smoke runs.
        "debug": {"model": PRESETS["debug"],
                  "train": dict(max_steps=20, batch_size=4, block_size=32, lr=3e-3, warmup_steps=2,
                                eval_interval=10, eval_batches=2, dropout=0.0, beta2=0.99)},
        # nanoGPT's CPU recipe (4 layers × 4 heads × 128, block 64, batch 12, lr 1e-3): `make demo`.
        "demo": {"model": PRESETS["demo"],
                 "train": dict(max_steps=2000, batch_size=12, block_size=64, lr=1e-3, min_lr=1e-4,
                               warmup_steps=100, eval_interval=250, eval_batches=20, dropout=0.0, beta2=0.99)},
        # nanoGPT's char-level Shakespeare GPU recipe (6 × 6 × 384, block 256).
        "small": {"model": PRESETS["small"],
                  "train": dict(max_steps=5000, batch_size=64, block_size=256, lr=1e-3, min_lr=1e-4,
                                warmup_steps=100, eval_interval=250, eval_batches=200, dropout=0.2, beta2=0.99)},
        "gpt2": {"model": PRESETS["gpt2"],
                 "train": dict(max_steps=600000, batch_size=12, block_size=1024, lr=6e-4, min_lr=6e-5,
                               warmup_steps=2000, eval_interval=2000, eval_batches=200, dropout=0.0,
                               beta2=0.95, grad_accum=40)},
    }

    Options = GPTOptions

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        self.tokenizer: CharTokenizer | SentencePieceTokenizer | None = None
        self.data: dict[str, torch.Tensor] = {}

    # ---- configuration -------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        return dict(self.flavors[self.cfg.flavor]["model"], vocab_size=self.tokenizer.vocab_size,
                    block_size=self.cfg.block_size, dropout=self.cfg.dropout or 0.0,
                    position={"absolute": "learned"}.get(self.opts.position, self.opts.position))

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return GPT(GPTConfig(**model_config))

    # ---- training ------------------------------------------------------------------------
    def _make_tokenizer(self, text: str):
        if self.cfg.tokenizer == "char":
            return CharTokenizer.fit(text)
        path = Path(self.cfg.tokenizer)
        if path.suffix != ".model":
            raise UserError(f"--tokenizer must be 'char' or a sentencepiece .model file "
                            f"(make one with `attnkit tokenize`), got {self.cfg.tokenizer}")
        return SentencePieceTokenizer.load(path)

    def prepare(self, run_dir: Path) -> None:
        if self.opts.position not in ("learned", "absolute", "rotary"):
            raise UserError(f"GPT supports position learned or rotary, got {self.opts.position!r}")
        text = load_text(self.cfg.data)
        self.tokenizer = self._make_tokenizer(text)
        self.tokenizer.save(Path(run_dir) / f"tokenizer{self.tokenizer.suffix}")
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        n_val = int(len(ids) * VAL_FRACTION)
        self.data = {"train": ids[: len(ids) - n_val], "val": ids[len(ids) - n_val:]}
        T = self.cfg.block_size
        for split, d in self.data.items():
            if len(d) <= T:
                raise UserError(f"block size {T} is larger than the data: the {split} split has only "
                                f"{len(d)} tokens (use a smaller --block-size or more --data)")

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        data, T = self.data[split], self.cfg.block_size
        ix = torch.randint(len(data) - T, (batch_size,), generator=generator)  # (B,)
        offsets = ix[:, None] + torch.arange(T + 1)  # (B, T + 1)
        chunk = data[offsets]  # (B, T + 1)
        return {"x": chunk[:, :-1], "y": chunk[:, 1:]}  # (B, T) each

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        _, loss = model(batch["x"], batch["y"], label_smoothing=self.cfg.label_smoothing or 0.0)
        return loss

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "GPTTask":
        task = cls(cfg)
        for suffix in (".json", ".model"):
            if (Path(run_dir) / f"tokenizer{suffix}").is_file():
                task.tokenizer = load_tokenizer(Path(run_dir) / f"tokenizer{suffix}")
                return task
        raise UserError(f"no tokenizer in {run_dir} (expected tokenizer.json or tokenizer.model)")

    def sample(self, model: nn.Module, cfg: SampleConfig, console: Console) -> dict[str, Any]:
        """Continue cfg.prompt (default: a newline); stream each sample as it is generated."""
        tok = self.tokenizer
        prompt = "\n" if cfg.prompt is None else cfg.prompt
        prompt_ids = tok.encode(prompt) if prompt else []
        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; give --prompt some text")
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(cfg.seed)  # on CPU: same text on every device
        samples = []
        for i in range(cfg.num_samples):
            if cfg.num_samples > 1:
                console.rule(f"sample {i + 1}/{cfg.num_samples}")
            ids = list(prompt_ids)
            shown = prompt
            out = sys.stdout
            if cfg.stream:
                out.write(prompt)
                out.flush()

            def on_token(t: torch.Tensor) -> None:
                nonlocal shown
                ids.append(int(t[0, 0]))
                if cfg.stream:
                    text = tok.decode(ids)
                    # Byte-fallback pieces decode to text only once a character is complete.
                    if text.startswith(shown) and not text.endswith("\ufffd"):
                        out.write(text[len(shown):])
                        out.flush()
                        shown = text

            x = torch.tensor([prompt_ids], dtype=torch.long, device=device)
            model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                           top_p=cfg.top_p, generator=generator, on_token=on_token)
            text = tok.decode(ids)
            if cfg.stream:
                out.write(text[len(shown):] + "\n")
                out.flush()
            else:
                console.print(text, markup=False, highlight=False)
            samples.append(text)
        return {"samples": samples}
