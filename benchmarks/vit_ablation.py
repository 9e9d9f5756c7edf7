"""One arm of the ViT-versus-SVM ablation (issue 28): train a ViT on the 8×8 digits, print its test accuracy.

The loop is the task's (same split, same model, AdamW with warmup and cosine decay to lr/10, label smoothing,
random one-pixel shifts) with each recipe knob as a flag, so arms differ in one thing:

    flock /work/heavy.lock .venv/bin/python benchmarks/vit_ablation.py --arm base --seeds 0 1 2
    flock /work/heavy.lock .venv/bin/python benchmarks/vit_ablation.py --arm long --steps 6000 --seeds 0 1 2

For each seed it reports the test accuracy of the final weights and of their exponential moving average
(`--ema`), each also with test-time augmentation (the softmax averaged over the digit and its four one-pixel
translates, the task's TTA_SHIFTS), beside the RBF SVM fitted on the same training digits in the same run, and prints one JSON line
per arm (`--out FILE` appends it): mean ± std over the seeds, each seed's value, the wall time.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from attnkit.engine.optim import lr_at, make_optimizer
from attnkit.fsio import append_line
from attnkit.nn.modes import mode
from attnkit.zoo.data.digits import LEVELS, load_digit_splits, random_shift
from attnkit.zoo.eval.vision import digit_baselines
from attnkit.zoo.models.vit import ViT, ViTConfig
from attnkit.zoo.tasks.vit import TTA_SHIFTS, predict


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--optimizer", default="adamw", choices=("adamw", "muon"))
    ap.add_argument("--size", type=int, default=8, help="image side: 8 (native) or 16 (upsampled)")
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--mlp-ratio", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--max-shift", type=int, default=1)
    ap.add_argument("--shift-prob", type=float, default=0.3)
    ap.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(α, α); 0: off")
    ap.add_argument("--ema", type=float, default=0.999, help="decay of the weights' moving average")
    ap.add_argument("--out", default=None)
    return ap.parse_args(argv)


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, shifts=((0, 0),)) -> float:
    with mode(model, False):  # the task's predict runs in the model's mode
        probs = predict(model, images, torch.device("cpu"), shifts=shifts)  # (N, n_class)
    return (probs.argmax(-1) == labels).float().mean().item()


SCORES = ("final", "ema", "final_tta", "ema_tta")  # weights (final or averaged) × views (the digit or TTA)


def train_one(a: argparse.Namespace, seed: int, splits) -> dict[str, float]:
    """Test accuracy of the final weights and of their moving average, each on the digit alone and averaged
    over the task's test-time shifts (TTA_SHIFTS, scaled to the image size), for one seed."""
    torch.manual_seed(seed)
    model = ViT(ViTConfig(image_size=a.size, patch_size=a.patch, n_layer=a.layers, n_head=a.heads,
                          d_model=a.width, mlp_ratio=a.mlp_ratio, dropout=a.dropout))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(model, a.lr, a.weight_decay, (0.9, 0.99), torch.device("cpu"), optimizer=a.optimizer)
    g = torch.Generator().manual_seed(seed + 1)
    images, labels = splits["train"]
    for step in range(a.steps):
        lr = lr_at(step, schedule="cosine", lr=a.lr, min_lr=a.lr / 10, warmup_steps=a.warmup, max_steps=a.steps)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        idx = torch.randint(0, len(images), (a.batch,), generator=g)
        x = random_shift(images[idx], a.max_shift * a.size // 8, g, a.shift_prob).float()[:, None] / (LEVELS - 1)
        target = F.one_hot(labels[idx], 10).float() * (1 - a.label_smoothing) + a.label_smoothing / 10  # (B, 10)
        if a.mixup > 0:
            lam = float(torch.distributions.Beta(a.mixup, a.mixup).sample())
            perm = torch.randperm(a.batch, generator=g)
            x, target = lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]
        loss = torch.sum(-target * F.log_softmax(model(x).float(), -1), -1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - a.ema)
    test = splits["test"]
    tta = tuple((dy * a.size // 8, dx * a.size // 8) for dy, dx in TTA_SHIFTS)
    return {"final": accuracy(model, *test), "ema": accuracy(ema, *test),
            "final_tta": accuracy(model, *test, tta), "ema_tta": accuracy(ema, *test, tta)}


def main(argv: list[str] | None = None) -> dict:
    a = parse(argv)
    splits = load_digit_splits(size=a.size)
    native = splits if a.size == 8 else load_digit_splits(size=8)  # the SVM sees the native 8×8 pixels
    svm = digit_baselines(*native["train"], *native["test"], LEVELS)[1][1]
    start, scores = time.perf_counter(), {k: [] for k in SCORES}
    for seed in a.seeds:
        for k, acc in train_one(a, seed, splits).items():
            scores[k].append(acc)
        print(f"{a.arm} seed {seed}: " + "  ".join(f"{k} {100 * v[-1]:.2f}%" for k, v in scores.items())
              + f"  (SVM {100 * svm:.2f}%)", flush=True)

    def stats(xs: list[float]) -> str:
        return f"{100 * statistics.mean(xs):.2f} ± {100 * (statistics.stdev(xs) if len(xs) > 1 else 0.0):.2f}"

    line = {"arm": a.arm, "args": vars(a), "svm": svm, **scores, **{f"{k}_mean_std": stats(v) for k, v in scores.items()},
            "wall_s_per_seed": round((time.perf_counter() - start) / len(a.seeds), 1),
            "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(line), flush=True)
    if a.out:
        append_line(a.out, json.dumps(line))
    return line


if __name__ == "__main__":
    main()
