"""`--model image`: the Image Transformer drawing scikit-learn digits pixel by pixel, conditioned on the class.

Digits are upsampled to 16×16 (17 intensity levels), so a pixel's useful context is local and local 2D
attention has something to skip. Metric: bits per dimension on the 360 test digits. `--attention
local2d|local1d|full` picks the pattern; `report` also counts the kernel tiles the block-sparse pattern
lets the kernel skip (the timing of the patterns is benchmarks/image_timing.py).
`attnkit sample` draws a grid of digits, one row per class (or one class with `--label`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.digits import LEVELS, load_digit_splits, random_shift, save_digit_grid
from attnkit.nn.masks import causal_mask, pattern_stats
from attnkit.zoo.models.image import ATTENTION_PATTERNS, ImageTransformer, ImageTransformerConfig
from attnkit.errors import UserError
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import ImageSampleOptions

# Kernel tiles (BLOCK_M, BLOCK_N) at which tile sparsity is reported: the interpreter's fixed 64×64 and a
# typical CUDA forward config (kernels/attention.py autotunes among 128×64, 128×128, 64×64, 128×32, 64×32).
TILES = ((64, 64), (128, 64))


@torch.no_grad()
def bits_per_dim(model: ImageTransformer, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 batch: int = 64) -> float:
    """Mean negative log2-likelihood per pixel over all images, in the model's mode (the engine sets eval)."""
    total = 0.0
    for i in range(0, len(images), batch):
        x, y = images[i:i + batch].to(device), labels[i:i + batch].to(device)
        total += model.loss(x, y).item() * len(x)
    return total / len(images) / math.log(2)


@dataclass
class ImageOptions:
    attention: str | None = field(default=None, metadata={
        "help": "attention pattern: full, local1d or local2d (default: the flavor's)"})


class ImageTask(Task):
    name = "image"
    default_flavor = "small"
    max_shift = 1  # augmentation: every training digit moves by up to 1 pixel of 16 (shifted digits are digits)
    flavors = {
        "debug": Flavor(
            model=dict(image_size=8, n_layer=1, n_head=2, d_model=32, dropout=0.0, attention="local2d",
                       query_block=(2, 4), memory_flange=(2, 2), block_1d=8, memory_1d=16),
            train=dict(max_steps=20, batch_size=16, lr=2e-3, warmup_steps=2, schedule="cosine", beta2=0.99,
                       eval_interval=10, eval_batches=1),
        ),
        "small": Flavor(
            model=dict(image_size=16, n_layer=3, n_head=4, d_model=64, dropout=0.1, attention="local2d",
                       query_block=(4, 8), memory_flange=(4, 4), block_1d=32, memory_1d=64),
            train=dict(max_steps=500, batch_size=16, lr=2e-3, warmup_steps=50, schedule="cosine", beta2=0.99,
                       eval_interval=100, eval_batches=1),
        ),
    }

    Options = ImageOptions

    # ---- configuration -------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        cfg = super().model_config()
        if self.opts.attention is not None:
            if self.opts.attention not in ATTENTION_PATTERNS:
                raise UserError(f"attention must be one of {', '.join(ATTENTION_PATTERNS)} for the image model, "
                                f"got {self.opts.attention!r}")
            cfg["attention"] = self.opts.attention
        return cfg

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return ImageTransformer(ImageTransformerConfig(**model_config))

    # ---- training ------------------------------------------------------------------------
    def prepare(self, run_dir: Path) -> None:
        self.splits = load_digit_splits(size=self.model_config()["image_size"])

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        images, labels = self.splits[split]
        idx = torch.randint(0, len(images), (batch_size,), generator=generator)
        x = images[idx]
        if split == "train":
            x = random_shift(x, self.max_shift, generator)
        return {"images": x.long(), "labels": labels[idx]}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.loss(batch["images"], batch["labels"])  # nats per pixel

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batches: int, device: torch.device) -> dict[str, float]:
        """Loss (nats/pixel) and bits/dim over the whole split (180 or 360 digits; `batches` is not needed)."""
        images, labels = self.splits[split]
        bpd = bits_per_dim(model, images.long(), labels, device)
        return {f"{split}_loss": bpd * math.log(2), f"{split}_bpd": bpd}

    def report(self, model: nn.Module, run_dir: Path) -> Report:
        """Test bits/dim, and how sparse the run's pattern is beside full causal attention (entries and kernel
        tiles). Timing the patterns against each other: benchmarks/image_timing.py --run RUN."""
        images, labels = self.splits["test"]
        test_bpd = bits_per_dim(model, images.long(), labels, model_device(model))
        L = model.cfg.length
        patterns = {"full": causal_mask(L)}
        if model.cfg.attention != "full":
            patterns[model.cfg.attention] = model.attn_mask.cpu()
        sparsity, rows = {}, []
        for name, mask in patterns.items():
            stats = {f"{m}x{n}": pattern_stats(mask, m, n) for m, n in TILES}
            sparsity[name] = {"entries": mask.float().mean().item(),
                              **{f"tiles_{k}": s["tiles_computed"] for k, s in stats.items()},
                              **{f"tiles_total_{k}": s["tiles_total"] for k, s in stats.items()}}
            rows.append([name, f"{100 * sparsity[name]['entries']:.1f}%",
                         *(f"{s['tiles_computed']}/{s['tiles_total']}" for s in stats.values())])
        report = Report({"test_bpd": test_bpd, "attention": model.cfg.attention, "pattern": sparsity})
        report.line(f"test bits/dim ({len(images)} digits, {model.cfg.image_size}×{model.cfg.image_size}, "
                    f"attention {model.cfg.attention}): {test_bpd:.4f}")
        report.table(f"attention pattern vs full causal (L={L})",
                     ["pattern", "visible entries", *(f"tiles {m}×{n}" for m, n in TILES)], rows)
        return report

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "ImageTask":
        return cls(cfg)

    SampleOptions = ImageSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Draw digits: one row per class (or only `label`), `num_samples` per row (8 when it is 1)."""
        label = self.sample_options(cfg).label
        if label is not None and not 0 <= label < model.cfg.n_class:
            raise UserError(f"--label must be a class in 0..{model.cfg.n_class - 1}, got {label}")
        device = model_device(model)
        classes = [label] if label is not None else list(range(model.cfg.n_class))
        per_class = cfg.num_samples if cfg.num_samples > 1 else 8
        labels = torch.tensor(classes, device=device).repeat_interleave(per_class)  # (N,)
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        drawn = None if self.progress is None else lambda t: self.progress(f"drawing {len(labels)} digits", t + 1, model.cfg.length)
        images = model.generate(labels, temperature=cfg.temperature, top_k=cfg.top_k, generator=generator,
                                on_pixel=drawn)
        images = images.cpu()  # (N, S, S) in 0..levels-1
        out = Path(cfg.out or cfg.run)
        out.mkdir(parents=True, exist_ok=True)
        name = "samples.png" if label is None else f"samples_label{label}.png"
        grid = images.reshape(len(classes), per_class, *images.shape[1:])
        png = save_digit_grid(out / name, grid, row_labels=[str(c) for c in classes],
                              suptitle=f"Image Transformer ({model.cfg.attention}) samples, "
                                       f"temperature {cfg.temperature}")
        report = Report({"png": png, "labels": classes, "per_class": per_class, "shape": list(images.shape)})
        if label is not None:
            report.line(_ascii(images[0]))
        report.file("samples", png)
        return report


def _ascii(image: torch.Tensor) -> str:
    """A digit (S, S) in 0..16 as text, two characters per pixel."""
    ramp = " .:-=+*#%@"
    return "\n".join("".join(ramp[int(v) * (len(ramp) - 1) // (LEVELS - 1)] * 2 for v in row) for row in image)
