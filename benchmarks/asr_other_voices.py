"""How a trained `--model asr` run hears synthesisers it never heard, saying the run's own held-out texts:
flite (CMU: voices kal16, awb, rms, slt and the 8 kHz kal) and festival (ked, a diphone voice, and slt in
HTS, a statistical-parametric voice). Issue #24's robustness estimate: espeak-ng trains the default model;
`synths=espeak+flite` also trains on flite's awb, rms and kal16, which this script then marks as heard.

    flock /work/heavy.lock python benchmarks/asr_other_voices.py --run runs/asr [--clips 100] [--warp 0.9]

flite and festival are Debian packages (`apt-get install flite festival festvox-kdlpc16k festvox-us-slt-hts`);
a voice whose synthesiser is missing prints one line and is skipped. Prints and writes RUN/other_voices.json
(or --json PATH): WER/CER per voice (beam, greedy, CTC best path when the model has a CTC head), the espeak-ng
held-out WER on the same texts, pocketsphinx on the same clips, and the mean WER over the voices the run never
heard. `--warp F`, a diagnosis: every test clip's formants (espeak-ng's too) are moved by F with
`augment.warp_formants` before the model hears them (pocketsphinx still gets the plain audio); F < 1 lowers them.
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
from attnkit.zoo.data import speech
from attnkit.zoo.data.augment import warp_formants
from attnkit.zoo.data.logmel import log_mel
from attnkit.zoo.eval import asr as asr_eval
from attnkit.zoo.tasks.asr import BEAM, read_wav

FESTIVAL = {"ked": "ked_diphone", "slt_hts": "cmu_us_slt_arctic_hts"}
VOICES = ("flite:kal16", "flite:awb", "flite:rms", "flite:slt", "flite:kal", "festival:ked", "festival:slt_hts")


def other_say(voice: str, text: str, tmp: Path) -> np.ndarray:
    """text said by "flite:NAME" or "festival:NAME", 16 kHz float32."""
    engine, name = voice.split(":")
    out = tmp / "clip.wav"
    if engine == "flite":
        subprocess.run(["flite", "-voice", name, "-t", text, "-o", str(out)], check=True, capture_output=True)
    else:
        subprocess.run(["text2wave", "-eval", f"(voice_{FESTIVAL[name]})", "-o", str(out)], input=text.encode(),
                       check=True, capture_output=True)
    return read_wav(out)


def available(voice: str) -> bool:
    engine, name = voice.split(":")
    if engine == "flite":
        return shutil.which("flite") is not None
    return shutil.which("text2wave") is not None and any(
        Path("/usr/share/festival/voices").glob(f"*/{FESTIVAL[name]}"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="runs/asr")
    ap.add_argument("--clips", type=int, default=100, help="held-out texts per voice")
    ap.add_argument("--voices", default=",".join(VOICES))
    ap.add_argument("--pocketsphinx", type=int, default=30, help="clips per voice for pocketsphinx (0: skip)")
    ap.add_argument("--warp", type=float, default=1.0, help="move every test clip's formants by this factor")
    ap.add_argument("--json", type=Path, help="where the results go (default RUN/other_voices.json, "
                                              "RUN/other_voices_warpF.json with --warp)")
    args = ap.parse_args(argv)
    if not 0.5 <= args.warp <= 2.0:
        print(f"error: --warp must be in [0.5, 2], got {args.warp}", file=sys.stderr)
        return 2
    hear = (lambda mel: warp_formants(mel, args.warp)) if args.warp != 1.0 else (lambda mel: mel)
    voices = [v for v in args.voices.split(",") if available(v) or print(
        f"skipped {v}: its synthesiser or voice is not installed (Debian packages flite, festival, "
        f"festvox-kdlpc16k, festvox-us-slt-hts)", file=sys.stderr)]
    if not voices:
        return 1
    run = load_run(args.run)
    task, model = run.task, run.model
    heldout = task._heldout_from_cache()
    heard = speech.FLITE_VOICES if task.synths != "espeak" else ()
    texts = [c.text for c in heldout.clips[:args.clips]]
    decodings = {"beam": BEAM, "greedy": 1, **({"ctc": 0} if model.cfg.ctc_head else {})}
    rows = []
    espeak = [hear(heldout.features(i)) for i in range(len(texts))]
    rows.append(dict(voice="espeak-ng held-out", **{f"wer_{k}": asr_eval.wer(texts, task.transcribe(model, espeak, b))
                                                    for k, b in decodings.items()}))
    with tempfile.TemporaryDirectory() as tmp:
        for voice in voices:
            t0 = time.perf_counter()
            waves = [other_say(voice, t, Path(tmp)) for t in texts]
            mels = [hear(log_mel(w).numpy()) for w in waves]
            row = dict(voice=voice, heard_in_training=voice.removeprefix("flite:") in heard)
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
    unheard = [r for r in rows[1:] if not r["heard_in_training"]]
    summary = dict(run=args.run, clips=len(texts), warp=args.warp,
                   date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="python " + " ".join(sys.argv), rows=rows,
                   wer_unheard_mean_beam=float(np.mean([r["wer_beam"] for r in unheard])) if unheard else None)
    out = args.json or Path(args.run, "other_voices.json" if args.warp == 1.0 else f"other_voices_warp{args.warp:g}.json")
    out.write_text(json.dumps(summary, indent=1))
    if unheard:
        print(f"mean WER (beam) over {len(unheard)} voices never heard in training: "
              f"{100 * summary['wer_unheard_mean_beam']:.1f}%   espeak-ng held-out on the same texts: "
              f"{100 * rows[0]['wer_beam']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
