"""GPT language modelling on text: the embedded corpus or --data, a char or sentencepiece tokenizer.

A running text is cut into random windows of block_size tokens. A corpus of documents (`--data python-functions`,
attnkit.zoo.data.text) trains on whole documents, one per row and padded, or with `--opt pack=true` packed end to
end into full rows with document ids (attnkit.zoo.data.documents): no padding, attention never crosses a
document, positions restart in each. Validation is one held-out document per row in both layouts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnkit.config import SampleConfig, TrainConfig
from attnkit.zoo.data.documents import IGNORE, DocumentPacker, pad_rows
from attnkit.zoo.data.text import DOCUMENT_CORPORA, load_documents, load_text
from attnkit.nn.modes import model_device
from attnkit.zoo.report import Echo, Report
from attnkit.zoo.data.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer
from attnkit.zoo.models.gpt import GPT, PRESETS, GPTConfig
from attnkit.errors import UserError
from attnkit.zoo.tasks.base import Flavor, Task
from attnkit.zoo.tasks.sample_options import GPTSampleOptions

VAL_FRACTION = 0.1
# Batch 8 × 128 tokens, 220 steps, Muon at 0.08 on the matrices and AdamW at 0.012 on embeddings, head and gains,
# flat then a linear cooldown (modded-nanogpt's trapezoid): tuned against nanoGPT's train.py (benchmarks/speedrun.py).
SPEEDRUN_TRAIN = dict(max_steps=220, batch_size=8, block_size=128, lr=1.2e-2, min_lr=0.0, warmup_steps=20,
                      schedule="trapezoid", eval_interval=55, eval_batches=8, dropout=0.0, beta2=0.95,
                      weight_decay=0.0, compile=False)


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class GPTOptions:
    """The model's switches (attnkit.zoo.models.gpt; defaults are GPT-2) and the optimizer (attnkit.engine.optim)."""
    position: str = _opt("learned", "positions: learned (GPT-2) or rotary")
    norm: str = _opt("layer", "layer (LayerNorm) or rms (RMSNorm, also on the embedding)")
    qk_norm: bool = _opt(False, "RMS-normalise queries and keys per head")
    activation: str = _opt("gelu", "MLP activation: gelu, relu, relu2 (ReLU²) or swiglu")
    tie_head: bool = _opt(True, "share the token embedding with the output head")
    zero_init: bool = _opt(False, "output projections (and an untied head) start at zero")
    softcap: float = _opt(0.0, "logit softcap c: c·tanh(logits/c); 0 is off")
    value_embeds: int = _opt(0, "value-embedding tables for the first and last layers")
    unet: bool = _opt(False, "U-net skips from the first half of the layers to the second")
    window: int = _opt(0, "sliding attention window in tokens; 0 = the whole context")
    window_warmup: bool = _opt(False, "grow the window from a quarter of it to all of it during training")
    optimizer: str = _opt("adamw", "adamw, or muon (torch.optim.Muon on hidden matrices, AdamW on the rest)")
    muon_lr: float = _opt(0.05, "Muon's peak learning rate (it follows --schedule)")
    pack: bool = _opt(False, "pack whole documents into full rows with document ids (no padding); needs a "
                             "document corpus, by default --data python-functions")


# GPTOptions that are model switches (GPTConfig fields), as opposed to training ones.
MODEL_SWITCHES = ("norm", "qk_norm", "activation", "tie_head", "zero_init", "softcap", "value_embeds", "unet",
                  "window")
# The modern recipe (modded-nanogpt) as options: `--flavor speedrun`.
SPEEDRUN_OPTIONS = dict(position="rotary", norm="rms", qk_norm=True, activation="gelu", tie_head=False,
                        zero_init=True, softcap=15.0, value_embeds=1, unet=True, window=0, window_warmup=False,
                        optimizer="muon", muon_lr=0.08)


class GPTTask(Task):
    name = "gpt"
    default_flavor = "demo"
    flavors = {
        # Trains in seconds on one core: for tests and smoke runs.
        "debug": Flavor(model=PRESETS["debug"],
                        train=dict(max_steps=20, batch_size=4, block_size=32, lr=3e-3, warmup_steps=2,
                                   eval_interval=10, eval_batches=2, dropout=0.0, beta2=0.99)),
        # nanoGPT's CPU recipe (4 layers × 4 heads × 128, block 64, batch 12, lr 1e-3): `make demo`.
        "demo": Flavor(model=PRESETS["demo"],
                       train=dict(max_steps=2000, batch_size=12, block_size=64, lr=1e-3, min_lr=1e-4,
                                  warmup_steps=100, eval_interval=250, eval_batches=20, dropout=0.0, beta2=0.99)),
        # nanoGPT's char-level Shakespeare GPU recipe (6 × 6 × 384, block 256).
        "small": Flavor(model=PRESETS["small"],
                        train=dict(max_steps=5000, batch_size=64, block_size=256, lr=1e-3, min_lr=1e-4,
                                   warmup_steps=100, eval_interval=250, eval_batches=200, dropout=0.2, beta2=0.99)),
        # The modern small-model recipe at the demo's size (see attnkit.zoo.models.gpt), tuned to reach the demo's
        # final val loss soonest on the CPU (benchmarks/speedrun.py). Needs torch.optim.Muon (torch >= 2.9).
        "speedrun": Flavor(model=dict(PRESETS["demo"], bias=False), train=SPEEDRUN_TRAIN, options=SPEEDRUN_OPTIONS),
        "gpt2": Flavor(model=PRESETS["gpt2"],
                       train=dict(max_steps=600000, batch_size=12, block_size=1024, lr=6e-4, min_lr=6e-5,
                                  warmup_steps=2000, eval_interval=2000, eval_batches=200, dropout=0.0,
                                  beta2=0.95, grad_accum=40)),
    }

    Options = GPTOptions

    def __init__(self, cfg: TrainConfig, opts=None):
        super().__init__(cfg, opts)
        self.tokenizer: CharTokenizer | SentencePieceTokenizer | None = None
        self.data: dict[str, torch.Tensor] = {}
        self.docs: dict[str, list[torch.Tensor]] = {}  # a document corpus: token ids per document, per split
        self.packer: DocumentPacker | None = None  # packs the training documents (--opt pack=true)
        self.window: int | None = None  # set by on_step under window warmup

    # ---- configuration -------------------------------------------------------------------
    def model_config(self) -> dict[str, Any]:
        # Switches at their GPT-2 default are left out, so runs saved before they existed resume unchanged.
        defaults = GPTConfig()
        switches = {k: getattr(self.opts, k) for k in MODEL_SWITCHES if getattr(self.opts, k) != getattr(defaults, k)}
        return dict(self.flavor.model, vocab_size=self.tokenizer.vocab_size,
                    block_size=self.cfg.block_size, dropout=self.cfg.dropout or 0.0,
                    position={"absolute": "learned"}.get(self.opts.position, self.opts.position), **switches)

    def optimizer_options(self) -> dict[str, Any]:
        """For attnkit.engine.optim.make_optimizer (the trainer asks)."""
        return dict(optimizer=self.opts.optimizer, muon_lr=self.opts.muon_lr)

    def on_step(self, step: int) -> None:
        """Window warmup: before optimizer step `step`, the attention window grows linearly with training
        progress from a quarter of the final window to all of it, in quarters (few distinct windows, so a
        compiled model recompiles at most four times)."""
        if self.opts.window_warmup:
            final = self.opts.window or self.cfg.block_size
            quarter = max(final // 4, 1)
            grown = quarter * (1 + (4 * step) // max(self.cfg.max_steps, 1))
            self.window = min(grown, final)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return GPT(GPTConfig(**model_config))

    # ---- training ------------------------------------------------------------------------
    def _make_tokenizer(self, text: str):
        if self.cfg.tokenizer == "char":
            return CharTokenizer.fit(text)
        path = Path(self.cfg.tokenizer)
        if path.suffix != ".model":
            raise UserError(f"--tokenizer must be 'char' or a .model file made by `attnkit tokenize`, "
                            f"got {self.cfg.tokenizer}")
        return load_tokenizer(path)

    def prepare(self, run_dir: Path) -> None:
        if self.opts.position not in ("learned", "absolute", "rotary"):
            raise UserError(f"GPT supports position learned or rotary, got {self.opts.position!r}")
        if self.opts.optimizer == "muon" and not hasattr(torch.optim, "Muon"):
            raise UserError(f"--opt optimizer=muon (the speedrun flavor's) needs torch.optim.Muon, in torch >= 2.9; "
                            f"this is torch {torch.__version__}: upgrade torch or pass --opt optimizer=adamw")
        try:
            GPTConfig(**{k: getattr(self.opts, k) for k in MODEL_SWITCHES})
        except ValueError as e:
            raise UserError(f"--opt: {e}") from None
        data = "python-functions" if self.opts.pack and self.cfg.data is None else self.cfg.data
        docs = load_documents(data)
        if self.opts.pack and docs is None:
            raise UserError(f"--opt pack=true packs documents; --data {data} is a running text (use one of "
                            f"{', '.join(DOCUMENT_CORPORA)})")
        text = load_text(data)
        self.tokenizer = self._make_tokenizer(text)
        self.tokenizer.save(Path(run_dir) / f"tokenizer{self.tokenizer.suffix}")
        if docs is not None:
            ids = [torch.tensor(self.tokenizer.encode(d), dtype=torch.long) for d in docs]
            ids = [d for d in ids if len(d) >= 2]  # a document predicts len − 1 tokens
            every = round(1 / VAL_FRACTION)  # every 10th document is held out
            self.docs = {"train": [d for i, d in enumerate(ids) if i % every != every - 1],
                         "val": [d for i, d in enumerate(ids) if i % every == every - 1]}
            self.packer = DocumentPacker(self.docs["train"], self.cfg.block_size) if self.opts.pack else None
            return
        ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        n_val = int(len(ids) * VAL_FRACTION)
        self.data = {"train": ids[: len(ids) - n_val], "val": ids[len(ids) - n_val:]}
        T = self.cfg.block_size
        for split, d in self.data.items():
            if len(d) <= T:
                raise UserError(f"block size {T} is larger than the data: the {split} split has only "
                                f"{len(d)} tokens (use a smaller --block-size or more --data)")

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.docs:
            docs, T = self.docs[split], self.cfg.block_size
            if self.packer is not None and split == "train":
                return self.packer.rows(batch_size, generator)
            return pad_rows(docs, torch.randint(len(docs), (batch_size,), generator=generator), T)
        data, T = self.data[split], self.cfg.block_size
        ix = torch.randint(len(data) - T, (batch_size,), generator=generator)  # (B,)
        offsets = ix[:, None] + torch.arange(T + 1)  # (B, T + 1)
        chunk = data[offsets]  # (B, T + 1)
        return {"x": chunk[:, :-1], "y": chunk[:, 1:]}  # (B, T) each

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Window warmup narrows attention in training only; evaluation sees the model's own window.
        extra = {"window": self.window} if self.window is not None and model.training else {}
        packed = {k: batch[k] for k in ("document_ids", "positions") if k in batch}
        _, loss = model(batch["x"], batch["y"], label_smoothing=self.cfg.label_smoothing or 0.0, **extra, **packed)
        return loss

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Real tokens: the predicted ones (padding is not counted)."""
        return int((batch["y"] != IGNORE).sum())

    def data_state(self) -> dict[str, Any]:
        return {"packer": self.packer.state_dict()} if self.packer is not None else {}

    # ---- sampling ------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: Path, cfg: TrainConfig) -> "GPTTask":
        task = cls(cfg)
        for suffix in (".json", ".model"):
            if (Path(run_dir) / f"tokenizer{suffix}").is_file():
                task.tokenizer = load_tokenizer(Path(run_dir) / f"tokenizer{suffix}")
                return task
        raise UserError(f"no tokenizer in {run_dir} (expected tokenizer.json or tokenizer.model)")

    SampleOptions = GPTSampleOptions
    def sample(self, model: nn.Module, cfg: SampleConfig, echo: Echo) -> Report:
        """Continue the prompt (default: a newline); with cfg.stream, echo each piece as it is generated."""
        tok, o = self.tokenizer, self.sample_options(cfg)
        prompt = "\n" if o.prompt is None else o.prompt
        prompt_ids = tok.encode(prompt) if prompt else []
        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; give --prompt some text")
        generator = torch.Generator().manual_seed(cfg.seed)  # on CPU: same text on every device
        report = Report()
        for i in range(cfg.num_samples):
            header = f"── sample {i + 1}/{cfg.num_samples} ──\n" if cfg.num_samples > 1 else ""
            ids, shown = list(prompt_ids), prompt
            if cfg.stream:
                echo(header + prompt)

            def on_token(t: torch.Tensor) -> None:
                nonlocal shown
                ids.append(int(t[0, 0]))
                if cfg.stream:
                    text = tok.decode(ids)
                    # Byte-fallback pieces decode to text only once a character is complete.
                    if text.startswith(shown) and not text.endswith("\ufffd"):
                        echo(text[len(shown):])
                        shown = text

            x = torch.tensor([prompt_ids], dtype=torch.long, device=model_device(model))  # (1, T)
            model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                           top_p=o.top_p, generator=generator, compile=o.compile, on_token=on_token)
            text = tok.decode(ids)
            if cfg.stream:
                echo(text[len(shown):] + "\n")
            else:
                report.line(header + text)
            report.metrics.setdefault("samples", []).append(text)
        return report
