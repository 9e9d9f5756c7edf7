"""How a trained `--model asr` run hears a synthesiser it never heard: flite (CMU), voices kal16, awb, rms,
slt and the 8 kHz kal, saying the run's own held-out texts. Issue #24's robustness estimate: espeak-ng
trains the model, flite is held out entirely.

    flock /work/heavy.lock python benchmarks/asr_other_voices.py --run runs/asr [--clips 100]

flite is a Debian package (`apt-get install flite`); without it this prints one line and exits 1.
Prints and writes RUN/other_voices.json: WER/CER per flite voice (beam, greedy, CTC best path when the
model has a CTC head), the espeak-ng held-out WER on the same texts, and pocketsphinx on the flite clips.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from attnkit.engine.sample import load_run
from attnkit.zoo.data.logmel import log_mel
from attnkit.zoo.eval import asr as asr_eval
from attnkit.zoo.tasks.asr import BEAM, read_wav

VOICES = ("kal16", "awb", "rms", "slt", "kal")


def flite_say(text: str, voice: str, tmp: Path) -> np.ndarray:
    out = tmp / f"{voice}.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True, capture_output=True)
    return read_wav(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/asr")
    ap.add_argument("--clips", type=int, default=100, help="held-out texts per voice")
    ap.add_argument("--voices", default=",".join(VOICES))
    ap.add_argument("--pocketsphinx", type=int, default=30, help="clips per voice for pocketsphinx (0: skip)")
    args = ap.parse_args(argv)
    if shutil.which("flite") is None:
        print("flite is not installed: apt-get install flite (Debian package flite)", file=sys.stderr)
        return 1
    run = load_run(args.run)
    task, model = run.task, run.model
    heldout = task._heldout_from_cache()
    texts = [c.text for c in heldout.clips[:args.clips]]
    decodings = {"beam": BEAM, "greedy": 1, **({"ctc": 0} if model.cfg.ctc_head else {})}
    rows = []
    espeak = [heldout.features(i) for i in range(len(texts))]
    rows.append(dict(voice="espeak-ng held-out", **{f"wer_{k}": asr_eval.wer(texts, task.transcribe(model, espeak, b))
                                                    for k, b in decodings.items()}))
    with tempfile.TemporaryDirectory() as tmp:
        for voice in args.voices.split(","):
            t0 = time.perf_counter()
            waves = [flite_say(t, voice, Path(tmp)) for t in texts]
            mels = [log_mel(w).numpy() for w in waves]
            row = dict(voice=f"flite {voice}")
            for k, b in decodings.items():
                hyps = task.transcribe(model, mels, b)
                row[f"wer_{k}"] = asr_eval.wer(texts, hyps)
                if k == "beam":
                    row["cer_beam"] = asr_eval.cer(texts, hyps)
                    row["examples"] = [[r, h] for r, h in zip(texts[:5], hyps[:5])]
            if args.pocketsphinx:
                n = args.pocketsphinx
                row["wer_pocketsphinx"] = asr_eval.wer(texts[:n], asr_eval.pocketsphinx_transcribe(waves[:n]))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    flite_rows = [r for r in rows if r["voice"].startswith("flite")]
    summary = dict(run=args.run, clips=len(texts), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="python " + " ".join(sys.argv), rows=rows,
                   wer_flite_mean_beam=float(np.mean([r["wer_beam"] for r in flite_rows])))
    Path(args.run, "other_voices.json").write_text(json.dumps(summary, indent=1))
    print(f"flite mean WER (beam): {100 * summary['wer_flite_mean_beam']:.1f}%   "
          f"espeak-ng held-out on the same texts: {100 * rows[0]['wer_beam']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
