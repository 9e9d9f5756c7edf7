"""BERT's fine-tuning ablation (issue 28, item 3): one pretraining, many fine-tuning arms.

Pretrains once (`attnkit train --model bert` with the fine-tuning phase off) into --pretrained, or reuses that
run directory if it is already there, then fine-tunes each arm from its weights: the pretrained encoder, the same
architecture from scratch (seeded as the task seeds it) and bag-of-words logistic regression, all on the same
labelled passages (`attnkit.zoo.eval.bert.finetune_comparison`). An arm is NAME:KEY=VALUE,... over the knobs
below; each arm and seed prints one JSON line, appended to --out if given (the table in docs/zoo/bert.md):

    flock /work/heavy.lock .venv/bin/python benchmarks/bert_finetune_ablation.py --pretrained /tmp/bert-pre-s0 \\
        --arm replaced:task=replaced_word --arm order:task=word_order,pooling=max --seeds 0,1,2

Knobs: task (attnkit.zoo.eval.bert.DOWNSTREAM), labels, test, words, steps, lr, batch_size, pooling (POOLINGS),
body_lr (the pretrained encoder's lr as a fraction of the head's; the scratch arm keeps 1), corrupt (words
replaced or swaps made in a corrupted passage).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from rich.console import Console

from attnkit.config import TrainConfig
from attnkit.engine.sample import load_run
from attnkit.engine.trainer import run_training
from attnkit.zoo.data.mlm import corpus_splits
from attnkit.zoo.eval.bert import finetune_comparison


@dataclass
class Arm:
    name: str
    task: str = "replaced_word"
    labels: int = 256
    test: int = 1000
    words: int = 16
    steps: int = 300
    lr: float = 3e-4
    batch_size: int = 32
    pooling: str = "mean"
    body_lr: float = 1.0
    corrupt: int = 1


def parse_arm(spec: str) -> Arm:
    """NAME:KEY=VALUE,KEY=VALUE → Arm, values typed as the field's default."""
    name, _, rest = spec.partition(":")
    types = {f.name: type(f.default) for f in fields(Arm) if f.name != "name"}
    kw = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown knob {key!r} in arm {spec!r}; knobs: {', '.join(types)}")
        kw[key] = types[key](value)
    return Arm(name, **kw)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrained", help="run directory: reused if present, else pretrained into")
    ap.add_argument("--table", default=None, help="only print the markdown table of this JSON-lines file")
    ap.add_argument("--baselines", action="store_true", help="only the linear baselines of each arm: bag of words "
                    "and bag of bigrams (no model, no --pretrained)")
    ap.add_argument("--flavor", default="small")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="default: the flavor's max_steps")
    ap.add_argument("--pretrain-seed", type=int, default=0)
    ap.add_argument("--mask-prob", type=float, default=None, help="pretraining masking rate (default: the task's)")
    ap.add_argument("--pre-ln", action="store_true", help="pretrain a pre-LN encoder")
    ap.add_argument("--pretrain-lr", type=float, default=None, help="default: the flavor's")
    ap.add_argument("--pretrain-opt", action="append", default=[], help="KEY=VALUE: a BERT option for the pretraining "
                    "(position=rotary, optimizer=muon, ...; repeatable)")
    ap.add_argument("--arm", action="append", default=[], help="NAME:KEY=VALUE,... (repeatable)")
    ap.add_argument("--seeds", default="0", help="fine-tuning seeds, comma-separated")
    ap.add_argument("--out", default=None, help="append each JSON line to this file")
    return ap.parse_args(argv)


def pretrain(run_dir: Path, flavor: str, steps: int | None, seed: int, mask_prob: float | None, pre_ln: bool,
             lr: float | None, opts: list[str] = ()) -> dict:
    """Pretrain into run_dir (fine-tuning phase off) unless it holds a finished run; its summary.json. opts:
    KEY=VALUE BERT options, as `--opt` takes them."""
    if not (run_dir / "summary.json").is_file():
        options = {"finetune_labels": 0, **({"pre_ln": True} if pre_ln else {}),
                   **({"mask_prob": mask_prob} if mask_prob is not None else {}), **dict(o.split("=", 1) for o in opts)}
        cfg = TrainConfig(model="bert", flavor=flavor, out=str(run_dir), max_steps=steps, seed=seed, lr=lr, device="cpu",
                          options=options)
        run_training(cfg, console=Console(stderr=True))
    return json.loads((run_dir / "summary.json").read_text())


def markdown_table(rows: list[dict]) -> str:
    """The ablation table of docs/zoo/bert.md: one line per (pretrained run, arm), accuracies as mean ± std over
    its seeds, each knob that differs from Arm's defaults."""
    import statistics

    defaults = {k: v for k, v in asdict(Arm("")).items() if k != "name"}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["pretrained"], r["arm"]), []).append(r)
    lines = ["| pretraining (steps, mask, MLM acc) | arm | changed knobs | seeds | pretrained | scratch | bag-of-words "
             "| zero-shot AUC (unmasked / PLL min) |", "|---|---|---|---|---|---|---|---|"]
    for (_, arm), rs in groups.items():
        def cell(key):
            xs = [100 * r[key] for r in rs]
            return f"{statistics.mean(xs):.1f}" + (f" ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else "")
        r = rs[0]
        knobs = ", ".join(f"{k}={r[k]}" for k, v in defaults.items() if r.get(k, v) != v) or "defaults"
        ln = (", pre-LN" if r.get("pre_ln") else "") + (", rotary" if r.get("position") == "rotary" else "")
        pre = f"{r['pretrain_steps']}, {r.get('mask_prob', 0.15)}{ln}, {100 * r['mlm_accuracy']:.1f}%"
        auc = " / ".join(f"{r[k]:.2f}" for k in ("finetune_zero_shot_auc", "finetune_zero_shot_pll_min_auc")
                         if k in r) or "–"  # older rows lack them
        lines.append(f"| {pre} | {arm} | {knobs} | {len(rs)} | {cell('finetune_acc_pretrained')} | "
                     f"{cell('finetune_acc_scratch')} | {cell('finetune_acc_bow')} | {auc} |")
    return "\n".join(lines)


def baselines(arms: list[Arm], seeds, flavor: str) -> list[dict]:
    """Bag-of-words and bag-of-bigrams logistic regression on each arm's passages (the flavor's text)."""
    from attnkit.zoo.eval.bert import bag_of_words_accuracy, downstream_examples
    from attnkit.zoo.tasks.bert import BERTTask

    texts, rows = corpus_splits(BERTTask.flavors[flavor].train.get("data")), []
    for seed in seeds:
        for arm in arms:
            train = downstream_examples(arm.task, texts["train"], arm.labels, arm.words, seed, arm.corrupt)
            test = downstream_examples(arm.task, texts["val"], arm.test, arm.words, seed + 1, arm.corrupt)
            row = {"arm": arm.name, "seed": seed, "flavor": flavor, "task": arm.task, "corrupt": arm.corrupt, "labels": arm.labels,
                   "bow": bag_of_words_accuracy(*train, *test), "bigrams": bag_of_words_accuracy(*train, *test, ngram=2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    a = parse(argv)
    if a.table:
        print(markdown_table([json.loads(line) for line in Path(a.table).read_text().splitlines() if line.strip()]))
        return []
    if a.baselines:
        return baselines([parse_arm(spec) for spec in a.arm or ["default"]], map(int, a.seeds.split(",")), a.flavor)
    if not a.pretrained:
        raise SystemExit("--pretrained RUN_DIR is required (or --table FILE)")
    summary = pretrain(Path(a.pretrained), a.flavor, a.pretrain_steps, a.pretrain_seed, a.mask_prob, a.pre_ln,
                       a.pretrain_lr, a.pretrain_opt)
    run = load_run(a.pretrained)
    texts = corpus_splits(run.config.data)
    rows = []
    for arm in map(parse_arm, a.arm or ["default"]):
        for seed in map(int, a.seeds.split(",")):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run.config.seed + 1)  # as BERTTask.finetune seeds its scratch model
                scratch = type(run.task).build_model(asdict(run.model.cfg))
            start = time.perf_counter()
            knobs = {k: v for k, v in asdict(arm).items() if k != "name"}
            result = finetune_comparison(run.model, scratch, run.task.encode_passages, texts["train"], texts["val"],
                                         seed=seed, mask_id=run.task.mask_id, **knobs)
            row = {"arm": arm.name, "seed": seed, **knobs, **result, "wall_s": round(time.perf_counter() - start, 1),
                   "pretrain_steps": summary["steps"], "mask_prob": run.task.opts.mask_prob, "pre_ln": run.model.cfg.pre_ln,
                   "position": run.model.cfg.position, "mlm_accuracy": summary["mlm_accuracy"],
                   "unigram_accuracy": summary["unigram_accuracy"], "pretrained": str(a.pretrained)}
            print(json.dumps(row), flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
