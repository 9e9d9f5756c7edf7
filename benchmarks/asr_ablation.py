"""Ablation arms of the ASR recipe (issue #24), side by side at equal steps, through `attnkit train`'s trainer.

Each arm is the `small` flavor with some of the recipe's levers switched (task options `ctc_weight`,
`subsample`, `augment`, and trainer overrides); all arms share the seed and the held-out clips. Synthesis is
cached per (clips, seed, augment) under --cache, so arms reuse it and the synthesis time is paid once (the
first arm of each kind records it in results.json as synth_wall_s).

    flock /work/heavy.lock env OMP_NUM_THREADS=2 python benchmarks/asr_ablation.py --arms base,ctc --steps 300

Appends one row per arm to OUT/results.json (the arm, its options, steps, train wall, report wall, WER/CER of
every decoding on held-out and seen voices, pocketsphinx) and rewrites OUT/report.md from all rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from attnkit.config import TrainConfig
from attnkit.engine.trainer import run_training
from attnkit.zoo.data import speech

ARMS: dict[str, tuple[dict, dict]] = {
    # name: (task options, trainer overrides); every arm but "flite" trains on espeak-ng alone
    "base": (dict(ctc_weight=0.0, subsample=2, augment="light", synths="espeak"), {}),
    "ctc": (dict(ctc_weight=0.3, subsample=2, augment="light", synths="espeak"), {}),
    "ctc_sub4": (dict(ctc_weight=0.3, subsample=4, augment="light", synths="espeak"), {}),
    "ctc_sub4_aug": (dict(ctc_weight=0.3, subsample=4, augment="full", synths="espeak"), {}),
    "ctc_sub4_aug_lr3": (dict(ctc_weight=0.3, subsample=4, augment="full", synths="espeak"), dict(lr=3e-3)),
    "sub4_aug": (dict(ctc_weight=0.0, subsample=4, augment="full", synths="espeak"), {}),
    "flite": (dict(ctc_weight=0.3, subsample=4, augment="full", synths="espeak+flite"), {}),
}
KEYS = ("wer_heldout_voices", "cer_heldout_voices", "wer_heldout_voices_greedy", "wer_heldout_voices_ctc",
        "wer_seen_voices", "wer_pocketsphinx")


def cached_build_corpus(cache: Path, synth_times: dict):
    """speech.build_corpus, memoised on disk by its arguments."""
    real = speech.build_corpus

    def build(n_train, n_test, seed, progress=None, augment=False, flite_share=0.0, flite_shift=False):
        flite = (f"_flite{flite_share:g}" if flite_share else "") + ("_shift" if flite_shift else "")
        path = cache / f"speech_{n_train}_{n_test}_{seed}_{'aug' if augment else 'plain'}{flite}.npz"
        if path.is_file():
            splits = speech.load_corpus(path)[0]
        else:
            t0 = time.perf_counter()
            splits = real(n_train, n_test, seed, progress, augment=augment, flite_share=flite_share,
                          flite_shift=flite_shift)
            synth_times[path.name] = time.perf_counter() - t0
            cache.mkdir(parents=True, exist_ok=True)
            speech.save_corpus(splits, path, {"n_train": n_train, "n_test": n_test, "seed": seed, "augment": augment})
        # Every arm is scored on the very same held-out and seen clips (espeak-ng is not bit-reproducible):
        # those of the first corpus built with these texts.
        shared = cache / f"eval_{n_test}.npz"
        if shared.is_file():
            first = speech.load_corpus(shared)[0]
            splits["heldout"], splits["seen"] = first["heldout"], first["seen"]
        else:
            speech.save_corpus(splits, shared, {"n_test": n_test})
        return splits

    return build


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arms", default="base,ctc", help=f"comma-separated, from {', '.join(ARMS)}")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--flavor", default="small")
    ap.add_argument("--test-clips", type=int, default=200)
    ap.add_argument("--out", default="runs/asr_ablation")
    ap.add_argument("--cache", default="runs/asr_cache")
    args = ap.parse_args(argv)
    out, synth_times = Path(args.out), {}
    real, speech.build_corpus = speech.build_corpus, cached_build_corpus(Path(args.cache), synth_times)
    try:
        return run_arms(args, out, synth_times)
    finally:
        speech.build_corpus = real  # a caller in the same process (the smoke test) gets espeak-ng's again


def run_arms(args, out: Path, synth_times: dict) -> list[dict]:
    results_path = out / "results.json"
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads(results_path.read_text()) if results_path.is_file() else []
    for arm in args.arms.split(","):
        options, overrides = ARMS[arm]
        cfg = TrainConfig(model="asr", flavor=args.flavor, max_steps=args.steps, seed=args.seed, out=str(out / arm),
                          overwrite=True, options=dict(options, test_clips=args.test_clips), **overrides)
        t0 = time.perf_counter()
        result = run_training(cfg)
        s = result.summary
        row = dict(arm=arm, options=options, overrides=overrides, steps=args.steps, seed=args.seed,
                   train_wall_s=s["wall_s"], total_wall_s=round(time.perf_counter() - t0, 1),
                   synth_wall_s=round(sum(synth_times.values()), 1), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="python " + " ".join(sys.argv), **{k: s.get(k) for k in KEYS})
        synth_times.clear()
        rows.append(row)
        results_path.write_text(json.dumps(rows, indent=1))
        lines = ["| arm | options | steps | train s | total s | WER held-out (beam) | CER held-out | WER greedy | "
                 "WER CTC | WER seen | pocketsphinx |", "|---" * 11 + "|"]
        pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"
        for r in rows:
            lines.append(f"| {r['arm']} | {r['options']} {r['overrides'] or ''} | {r['steps']} | {r['train_wall_s']:.0f} | "
                         f"{r['total_wall_s']:.0f} | {pct(r['wer_heldout_voices'])} | {pct(r['cer_heldout_voices'])} | "
                         f"{pct(r['wer_heldout_voices_greedy'])} | {pct(r['wer_heldout_voices_ctc'])} | "
                         f"{pct(r['wer_seen_voices'])} | {pct(r['wer_pocketsphinx'])} |")
        (out / "report.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines), flush=True)
    return rows


if __name__ == "__main__":
    main()
