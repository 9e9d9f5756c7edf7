"""Each voice's pitch (f0) and formants (F1, F2 by LPC): how the unheard test voices of
benchmarks/asr_other_voices.py differ from the voices the default `--model asr` trains on (issue #24).

    python benchmarks/asr_voice_traits.py [--texts 8] [--json PATH]

Every voice says the same held-out texts, without noise. Per voice: the median f0 over voiced frames
(autocorrelation, 70-400 Hz) and the median F1 and F2 over those frames (LPC of order 12 at 10 kHz, the lowest
two roots narrower than 400 Hz: a speaker's typical vowel space, not one vowel's). Training voices: espeak-ng's
seen voices (at pitch 50; training draws 25-75, so their real pitch range is wider than shown), flite's awb,
rms and kal16, and awb and kal16 at the middle of `synths=espeak+flite+shift`'s women's pitch and formants.
For each voice never heard it prints the nearest training voice in pitch and in (F1, F2), in semitones.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.linalg import solve_toeplitz
from scipy.signal import resample_poly

from attnkit.zoo.data import speech

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr_other_voices import available, other_say  # noqa: E402  (beside this file: flite and festival, as it scores them)

SR, LPC_SR, LPC_ORDER = 16_000, 10_000, 12
SHIFT_MID = dict(f0_hz=int(np.mean(speech.SHIFT_F0_HZ)), formant=round(float(np.mean(speech.SHIFT_FORMANT)), 2))
UNHEARD = ("flite:slt", "flite:kal", "festival:ked", "festival:slt_hts")


def frames(wave: np.ndarray, sr: int, ms: float = 32.0, hop_ms: float = 10.0) -> np.ndarray:
    n, hop = int(sr * ms / 1000), int(sr * hop_ms / 1000)
    starts = range(0, max(len(wave) - n, 0) + 1, hop)
    return np.stack([wave[s:s + n] for s in starts])                  # (frames, n)


def pitch(frame: np.ndarray) -> tuple[float, float]:
    """(f0 in Hz, the normalised autocorrelation at its lag) of one 16 kHz frame."""
    x = frame - frame.mean()
    ac = np.correlate(x, x, "full")[x.size - 1:]
    lo, hi = SR // 400, SR // 70
    lag = lo + int(np.argmax(ac[lo:hi]))
    return SR / lag, float(ac[lag] / (ac[0] + 1e-12))


def formants(frame: np.ndarray) -> list[float]:
    """Formant frequencies (Hz, ascending) of one 10 kHz frame: the LPC polynomial's roots narrower than 400 Hz."""
    x = np.append(frame[0], frame[1:] - 0.97 * frame[:-1]) * np.hamming(frame.size)   # pre-emphasis, window
    r = np.correlate(x, x, "full")[x.size - 1:x.size + LPC_ORDER]
    a = solve_toeplitz(r[:LPC_ORDER], r[1:LPC_ORDER + 1])
    roots = [z for z in np.roots(np.concatenate([[1.0], -a])) if z.imag > 0]
    hz = [np.angle(z) * LPC_SR / (2 * np.pi) for z in roots if -LPC_SR / np.pi * np.log(abs(z)) < 400]
    return sorted(f for f in hz if f > 90)


def traits(waves: list[np.ndarray]) -> dict[str, float]:
    """Median f0, F1, F2 over the voiced frames of a voice's clips (16 kHz)."""
    f0s, f1s, f2s = [], [], []
    for wave in waves:
        low = resample_poly(wave, LPC_SR // 1000, SR // 1000)
        wave_frames = frames(wave, SR)
        energy = (wave_frames ** 2).sum(1)
        for frame, e, lpc_frame in zip(wave_frames, energy, frames(low, LPC_SR)):
            f0, strength = pitch(frame)
            fs = formants(lpc_frame) if e > 0.05 * np.percentile(energy, 95) and strength > 0.5 else []
            if len(fs) >= 2:
                f0s.append(f0)
                f1s.append(fs[0])
                f2s.append(fs[1])
    return dict(f0=float(np.median(f0s)), F1=float(np.median(f1s)), F2=float(np.median(f2s)), frames=len(f0s))


def semitones(a: float, b: float) -> float:
    return float(12 * abs(np.log2(a / b)))


def formant_distance(a: dict, b: dict) -> float:
    """How far apart two voices' (F1, F2) are: the Euclidean distance of their semitone differences."""
    return float(np.hypot(semitones(a["F1"], b["F1"]), semitones(a["F2"], b["F2"])))


def voice_waves(voice: str, texts: list[str], tmp: Path) -> list[np.ndarray]:
    """The texts said by an espeak-ng variant, "flite:NAME", "flite:NAME+shift" or "festival:NAME", 16 kHz."""
    if ":" not in voice:
        return [speech.say(t, voice) for t in texts]
    if voice.endswith("+shift"):
        return [speech.flite_say(t, voice.removeprefix("flite:").removesuffix("+shift"), **SHIFT_MID) for t in texts]
    return [other_say(voice, t, tmp) for t in texts]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=8, help="held-out texts each voice says")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--voices", help="comma-separated; default: the training voices, espeak-ng's held-out and the "
                                     "unheard ones")
    args = ap.parse_args(argv)
    texts = speech.corpus_texts(0, args.texts)[1]
    training = [*speech.SEEN_VOICES, *(f"flite:{v}" for v in speech.FLITE_VOICES),
                *(f"flite:{v}+shift" for v in speech.FLITE_SHIFTABLE)]
    voices = args.voices.split(",") if args.voices else [*training, *speech.HELDOUT_VOICES, *UNHEARD]
    voices = [v for v in voices if ":" not in v or available(v.removesuffix("+shift")) or print(
        f"skipped {v}: its synthesiser or voice is not installed", file=sys.stderr)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice in voices:
            group = "training" if voice in training else "unheard" if voice in UNHEARD else "espeak-ng held-out"
            rows.append(dict(voice=voice, group=group, **traits(voice_waves(voice, texts, Path(tmp)))))
            r = rows[-1]
            print(f"{voice:22} {group:18} f0 {r['f0']:5.0f} Hz   F1 {r['F1']:5.0f} Hz   F2 {r['F2']:5.0f} Hz"
                  f"   ({r['frames']} voiced frames)", flush=True)
    train_rows = [r for r in rows if r["group"] == "training"]
    for r in rows:
        if r["group"] != "unheard" or not train_rows:
            continue
        by_pitch = min(train_rows, key=lambda t: semitones(r["f0"], t["f0"]))
        by_formants = min(train_rows, key=lambda t: formant_distance(r, t))
        r["nearest_pitch"] = dict(voice=by_pitch["voice"], semitones=semitones(r["f0"], by_pitch["f0"]))
        r["nearest_formants"] = dict(voice=by_formants["voice"], semitones=formant_distance(r, by_formants))
        print(f"{r['voice']}: nearest training voice in pitch {by_pitch['voice']} "
              f"({r['nearest_pitch']['semitones']:.1f} semitones), in (F1, F2) {by_formants['voice']} "
              f"({r['nearest_formants']['semitones']:.1f} semitones)")
    if args.json:
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        args.json.write_text(json.dumps(dict(command="python " + " ".join(sys.argv), date=date, texts=texts, rows=rows),
                                        indent=1))
    return rows


if __name__ == "__main__":
    main()
