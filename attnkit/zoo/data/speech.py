"""Spoken numbers, dates and short commands, synthesised offline by espeak-ng, for `--model asr`.

espeak-ng comes from the `espeakng-loader` wheel (the shared library and its voice data), driven through
ctypes in synchronous mode: `espeak_Synth` calls our callback with 16-bit chunks at 22 050 Hz, which
`scipy.signal.resample_poly` takes to Whisper's 16 kHz. Speakers vary by voice variant (m1–m8, f1–f5,
klatt, …), rate and pitch, and every clip gets white noise at a random SNR. With `augment=True` (the training
split of the hybrid recipe) a clip also varies by English dialect (US, British RP, Scottish, Caribbean, New
York, …: other pronunciations and prosody), word gap, and the waveform effects of
`attnkit.zoo.data.augment.perturb` (speed, reverberation, band-limiting, noise of three colours); the
held-out splits stay plain US English with white noise, so their WER stays comparable across recipes. Some voices and some texts are
held out, so the held-out score measures new speakers saying new sentences:

    train          seen voices   × training texts
    heldout        held-out voices × held-out texts      (the headline WER)
    seen           seen voices   × held-out texts        (new sentences, familiar speakers)

Synthesis is not bit-reproducible (repeated calls differ by a few samples, some voices differ across
processes), so a run generates its clips once and caches them (`build_corpus` → `speech.npz`).
"""
from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from attnkit.zoo.data.numbers import number_to_words

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050

# espeak-ng's C API constants (speak_lib.h).
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE_PARAM, ESPEAK_PITCH_PARAM, ESPEAK_WORDGAP_PARAM = 1, 3, 7
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# Voice variants of espeak-ng's English (`en-us+NAME`). Held out: a male, a female, a formant synthesiser
# and two characters, so every kind of speaker is tested on a voice it never heard.
SEEN_VOICES = ("m1", "m2", "m4", "m5", "m6", "m8", "f1", "f3", "f4", "klatt", "klatt3", "klatt4",
               "Alex", "Andy", "Annie", "david", "ed", "edward", "john", "linda", "max", "michel",
               "paul", "robert", "steph", "travis", "zac", "Mr serious", "Denis", "Lee")
HELDOUT_VOICES = ("m3", "m7", "f2", "f5", "klatt2", "iven", "aunty", "norbert")
# English dialects of espeak-ng that augmented training clips are drawn from (held-out clips are en-us).
TRAIN_DIALECTS = ("en-us", "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan")


class Espeak:
    """One espeak-ng instance per process (the library keeps global state), used under a lock."""

    _lock = threading.Lock()

    def __init__(self):
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = espeakng_loader.get_data_path()
        # espeak-ng silently ignores an unknown variant, so we check against its voice files ourselves.
        self.variants = {p.name for p in (Path(data) / "voices" / "!v").iterdir()}
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng failed to initialise (returned {rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = continue

    def synth(self, text: str, voice: str = "m1", rate: int = 175, pitch: int = 50, dialect: str = "en-us",
              word_gap: int = 0) -> np.ndarray:
        """text → float32 waveform in [-1, 1] at 22 050 Hz. rate in words per minute, pitch 0–100,
        word_gap in units of 10 ms."""
        if voice not in self.variants:
            raise ValueError(f"unknown espeak-ng voice {voice!r}; choose from {', '.join(sorted(self.variants))}")
        with self._lock:
            if self.lib.espeak_SetVoiceByName(f"{dialect}+{voice}".encode()) != 0:
                raise ValueError(f"unknown espeak-ng voice {dialect}+{voice!r}")
            self.lib.espeak_SetParameter(ESPEAK_RATE_PARAM, int(rate), 0)
            self.lib.espeak_SetParameter(ESPEAK_PITCH_PARAM, int(pitch), 0)
            self.lib.espeak_SetParameter(ESPEAK_WORDGAP_PARAM, int(word_gap), 0)
            self._chunks = []
            raw = text.encode() + b"\0"
            self.lib.espeak_Synth(raw, len(raw), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return wav.astype(np.float32) / 32768.0


@lru_cache(maxsize=1)
def espeak() -> Espeak:
    return Espeak()


def to_16k(wave: np.ndarray, rate: int) -> np.ndarray:
    """Polyphase resampling to 16 kHz (22 050 → 16 000 is 320/441)."""
    if rate == SAMPLE_RATE:
        return wave.astype(np.float32)
    g = np.gcd(SAMPLE_RATE, rate)
    return resample_poly(wave, SAMPLE_RATE // g, rate // g).astype(np.float32)


def say(text: str, voice: str = "m1", rate: int = 175, pitch: int = 50, dialect: str = "en-us",
        word_gap: int = 0, f0_hz: int = 0, formant: float = 1.0) -> np.ndarray:
    """text spoken by an espeak-ng voice (or "flite:NAME", which ignores pitch, dialect and word gap and
    takes f0_hz and formant instead: see `flite_say`), float32 at 16 kHz."""
    if voice.startswith("flite:"):
        return flite_say(text, voice.removeprefix("flite:"), rate, f0_hz, formant)
    return to_16k(espeak().synth(text, voice, rate, pitch, dialect, word_gap), ESPEAK_RATE)


# flite (CMU's synthesiser; Debian package `flite`) is the second training synthesiser of `synths=espeak+flite`:
# its voices awb, rms (recorded speakers) and kal16 (diphones). Its voice slt and festival's voices stay
# held out (benchmarks/asr_other_voices.py).
FLITE_VOICES = ("awb", "rms", "kal16")
FLITE_SHARE = 0.25  # of the training clips
# All three are men (F0 100–135 Hz). `synths=espeak+flite+shift` turns half of the awb and kal16 clips into
# higher voices (rms ignores flite's pitch target): F0 170–250 Hz and formants 1.08–1.22× higher, about
# where women's voices sit, so recorded-voice prosody is heard at women's pitch too.
FLITE_SHIFTABLE = ("awb", "kal16")
SHIFT_F0_HZ = (170, 250)
SHIFT_FORMANT = (1.08, 1.22)


def flite_say(text: str, voice: str, rate: int = 175, f0_hz: int = 0, formant: float = 1.0) -> np.ndarray:
    """text spoken by a flite voice at about `rate` words per minute (175 = flite's own pace), float32 at 16 kHz.

    f0_hz: the voice's mean pitch (0 = its own). formant > 1: the clip is said `formant`× slower with its pitch
    at f0_hz / formant, then played `formant`× faster (`augment.change_speed`), which restores its length and
    pitch and moves every formant up by that factor, like a shorter vocal tract."""
    from attnkit.errors import UserError
    from attnkit.zoo.data.audio import read_wav
    from attnkit.zoo.data.augment import change_speed

    exe = shutil.which("flite")
    if exe is None:
        raise UserError("speech from flite needs the Debian package flite (apt-get install flite)")
    settings = [f"duration_stretch={175 / rate * formant:.3f}"]
    if f0_hz:
        settings += [f"int_f0_target_mean={f0_hz / formant:.1f}", f"int_f0_target_stddev={0.15 * f0_hz / formant:.1f}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.wav"
        subprocess.run([exe, "-voice", voice, *(a for kv in settings for a in ("--setf", kv)), "-t", text,
                        "-o", str(out)], check=True, capture_output=True)
        wave = read_wav(out)
    return change_speed(wave, formant) if formant != 1.0 else wave


# ---- what is said ------------------------------------------------------------------------------
MONTHS = "january february march april may june july august september october november december".split()
ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
            "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()
COMMANDS = ("call {n}", "dial {n}", "set a timer for {n} minutes", "turn the volume to {n}",
            "go to page {n}", "move {n} steps forward", "send {n} dollars", "add {n} to the list",
            "the meeting is on {date}", "remind me on {date}", "the code is {digits}", "room {n}")


def ordinal(day: int) -> str:
    """1..31 → "first" … "thirty first"."""
    if day <= 20:
        return ORDINALS[day - 1]
    tens, unit = divmod(day, 10)
    return "thirtieth" if day == 30 else ("twentieth" if unit == 0 else f"{number_to_words(tens * 10)} {ORDINALS[unit - 1]}")


def _number(rng: random.Random) -> str:
    digits = rng.randint(1, 5)
    return number_to_words(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1))


def _date(rng: random.Random) -> str:
    year = rng.randint(1900, 2039)
    spoken_year = number_to_words(year) if year % 1000 < 10 else \
        f"{number_to_words(year // 100)} {number_to_words(year % 100) if year % 100 >= 10 else 'oh ' + number_to_words(year % 100)}"
    return f"{MONTHS[rng.randrange(12)]} {ordinal(rng.randint(1, 28))} {spoken_year}"


def _digits(rng: random.Random) -> str:
    return " ".join(number_to_words(rng.randrange(10)) for _ in range(rng.randint(3, 6)))


def random_text(rng: random.Random) -> str:
    """A lower-case transcript: a number, a date, a digit string or a short command around one."""
    kind = rng.random()
    if kind < 0.3:
        return _number(rng)
    if kind < 0.45:
        return _date(rng)
    if kind < 0.6:
        return _digits(rng)
    template = rng.choice(COMMANDS)
    return template.format(n=_number(rng), date=_date(rng), digits=_digits(rng))


def make_texts(n: int, seed: int, exclude: set[str] = frozenset()) -> list[str]:
    """n distinct texts not in `exclude`, drawn with `seed`."""
    rng, out = random.Random(seed), {}
    while len(out) < n:
        t = random_text(rng)
        if t not in exclude:
            out[t] = None
    return list(out)


# ---- the corpus -----------------------------------------------------------------------------------
class CharVocab:
    """The transcripts' alphabet: <pad>, <s>, </s>, then space, apostrophe and a–z; `encode` drops the rest."""
    pad_id, bos_id, eos_id = 0, 1, 2
    chars = " 'abcdefghijklmnopqrstuvwxyz"

    vocab_size = 3 + len(chars)

    def encode(self, text: str) -> list[int]:
        return [3 + self.chars.index(c) for c in text.lower() if c in self.chars]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3)


@dataclass
class Clip:
    text: str
    voice: str
    rate: int
    pitch: int
    snr_db: float
    dialect: str = "en-us"
    word_gap: int = 0
    effects: str = ""          # the waveform effects of augment.perturb, described; "" = white noise only
    f0_hz: int = 0             # flite only: the shifted speaker's pitch (0 = the voice's own)
    formant: float = 1.0       # flite only: the shifted speaker's formant factor


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White noise at the given signal-to-noise ratio (in dB, relative to the clip's mean power)."""
    power = float(np.mean(wave ** 2)) if wave.size else 0.0
    noise = rng.standard_normal(wave.shape).astype(np.float32) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(wave + noise, -1.0, 1.0).astype(np.float32)


def synth_clips(texts: list[str], voices: tuple[str, ...], seed: int, augment: bool = False,
                flite_share: float = 0.0, flite_shift: bool = False) -> tuple[list[Clip], list[np.ndarray]]:
    """Each text once, by a random voice at a random rate (130–210 wpm) and pitch (25–75), plus noise
    (SNR 10–40 dB). augment: also a random dialect and word gap (0–3), then `augment.perturb`'s effects in
    place of the plain white noise. flite_share: that share of the clips is said by a flite voice instead;
    flite_shift: half of those said by a `FLITE_SHIFTABLE` voice move to a higher pitch and formants.
    Returns the clip descriptions and their 16 kHz float32 waveforms."""
    from attnkit.zoo.data.augment import perturb

    rng, clips, waves = random.Random(seed), [], []
    for i, text in enumerate(texts):
        # Each clip's own noise stream: espeak-ng's waveforms differ by a few samples from call to call, and
        # one shared stream would let that shift every later clip's effects.
        nrng = np.random.default_rng((seed, i))
        clip = Clip(text, rng.choice(voices), rng.randint(130, 210), rng.randint(25, 75), rng.uniform(10, 40))
        if augment:
            clip.dialect, clip.word_gap = rng.choice(TRAIN_DIALECTS), rng.choice((0, 0, 1, 2, 3))
        if flite_share and rng.random() < flite_share:
            clip.voice, clip.dialect, clip.word_gap = "flite:" + rng.choice(FLITE_VOICES), "", 0
            if flite_shift and clip.voice.removeprefix("flite:") in FLITE_SHIFTABLE and rng.random() < 0.5:
                clip.f0_hz, clip.formant = rng.randint(*SHIFT_F0_HZ), round(rng.uniform(*SHIFT_FORMANT), 2)
        wave = say(text, clip.voice, clip.rate, clip.pitch, clip.dialect, clip.word_gap, clip.f0_hz, clip.formant)
        if augment:
            wave, clip.effects, clip.snr_db = perturb(wave, nrng)
        else:
            wave = add_noise(wave, clip.snr_db, nrng)
        clips.append(clip)
        waves.append(wave)
    return clips, waves


# ---- the cache in the run directory -----------------------------------------------------------------
@dataclass
class Split:
    """One split's clips: log-mel quantised to uint8 (see `quantise`), transcripts and speaker settings;
    the held-out splits keep their 16 kHz waveforms too (int16), for the baseline and for `sample`."""
    clips: list[Clip]
    mel: np.ndarray            # (n_mels, total frames) uint8
    top: np.ndarray            # (N,) float32: each clip's largest log-mel value
    offsets: np.ndarray        # (N + 1,) int64 frame offsets into mel
    wave: np.ndarray | None = None          # (total samples,) int16
    wave_offsets: np.ndarray | None = None  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.clips)

    def features(self, i: int) -> np.ndarray:
        """(n_mels, frames) float32 log-mel of clip i."""
        return dequantise(self.mel[:, self.offsets[i]:self.offsets[i + 1]], self.top[i])

    def waveform(self, i: int) -> np.ndarray:
        """(samples,) float32 at 16 kHz of clip i (held-out splits only)."""
        return self.wave[self.wave_offsets[i]:self.wave_offsets[i + 1]].astype(np.float32) / 32767.0


# Whisper's log-mel of a clip spans exactly [top - 2, top] (the max - 8 clamp, divided by 4): 8 bits
# over that range are steps of 0.008, far below the noise we add.
def quantise(mel: np.ndarray) -> tuple[np.ndarray, float]:
    top = float(mel.max())
    return np.round((mel - (top - 2.0)) * (255 / 2.0)).clip(0, 255).astype(np.uint8), top


def dequantise(q: np.ndarray, top: float) -> np.ndarray:
    return q.astype(np.float32) * (2.0 / 255) + (top - 2.0)


def make_split(clips: list[Clip], waves: list[np.ndarray], keep_wave: bool) -> Split:
    from attnkit.zoo.data.logmel import log_mel

    mels, tops = zip(*(quantise(log_mel(w).numpy()) for w in waves))
    offsets = np.cumsum([0] + [m.shape[1] for m in mels])
    split = Split(list(clips), np.concatenate(mels, axis=1), np.asarray(tops, np.float32), offsets)
    if keep_wave:
        split.wave = np.concatenate([(w * 32767).astype(np.int16) for w in waves])
        split.wave_offsets = np.cumsum([0] + [len(w) for w in waves])
    return split


def corpus_texts(n_train: int, n_test: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts). Held-out texts have at least 3 words (a fixed draw, seed 0), and
    training never says one of them; short texts ("seven") are too few to hold out, so they stay in training."""
    rng, test = random.Random(0), {}
    while len(test) < n_test:
        t = random_text(rng)
        if len(t.split()) >= 3:
            test[t] = None
    return make_texts(n_train, seed=1, exclude=set(test)), list(test)


def build_corpus(n_train: int, n_test: int, seed: int, progress=None, augment: bool = False,
                 flite_share: float = 0.0, flite_shift: bool = False) -> dict[str, Split]:
    """Synthesise the three splits: train (seen voices), heldout (held-out voices), seen (seen voices),
    the last two saying the same held-out texts. `progress(done, total)` is called as clips are made.
    augment: the training split gets dialects, word gaps and waveform effects (`synth_clips`); flite_share:
    that share of its clips is said by flite (flite_shift: half of some of them at women's pitch, `synth_clips`).

    Chunks of 250 clips are seeded by their position, so they are synthesised in parallel, one process per
    core: the texts, voices and effects are the same whatever the number of processes (espeak-ng's audio
    itself varies by a few samples from call to call)."""
    train_texts, test_texts = corpus_texts(n_train, n_test)
    splits = [("train", train_texts, SEEN_VOICES, seed), ("heldout", test_texts, HELDOUT_VOICES, 10_001),
              ("seen", test_texts, SEEN_VOICES, 10_002)]
    chunks = [(name, (texts[start:start + 250], voices, s + start, augment and name == "train",
                      flite_share if name == "train" else 0.0, flite_shift and name == "train"))
              for name, texts, voices, s in splits for start in range(0, len(texts), 250)]
    workers = min(len(os.sched_getaffinity(0)), len(chunks))
    total, done, clips, waves = n_train + 2 * n_test, 0, {}, {}
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # fork, not spawn: the workers need nothing re-imported, and a user's script needs no __main__ guard.
            # They run espeak-ng and numpy/scipy only, never torch's thread pool, which fork would not carry.
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
            results = pool.map(synth_clips, *zip(*(job for _, job in chunks)))
        else:
            results = (synth_clips(*job) for _, job in chunks)
        for (name, _), (c, w) in zip(chunks, results):
            clips.setdefault(name, []).extend(c)
            waves.setdefault(name, []).extend(w)
            done += len(c)
            if progress:
                progress(done, total)
    return {name: make_split(clips[name], waves[name], keep_wave=name != "train") for name, *_ in splits}


def save_corpus(corpus: dict[str, Split], path, spec: dict) -> None:
    """Write all splits to one .npz, atomically (temp file + rename)."""
    import io
    import json

    from attnkit.fsio import atomic_write

    arrays = {"spec": np.asarray(json.dumps(spec))}
    for name, s in corpus.items():
        arrays[f"{name}_mel"], arrays[f"{name}_top"], arrays[f"{name}_offsets"] = s.mel, s.top, s.offsets
        arrays[f"{name}_clips"] = np.asarray(json.dumps([c.__dict__ for c in s.clips]))
        if s.wave is not None:
            arrays[f"{name}_wave"], arrays[f"{name}_wave_offsets"] = s.wave, s.wave_offsets
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def resume_corpus(path: Path, spec: dict) -> dict[str, Split]:
    """The splits a run cached at path, which must have been made with `spec`; otherwise the run cannot resume."""
    from attnkit.errors import UserError

    if not Path(path).is_file():
        raise UserError(f"cannot resume: {path} is missing (the run's synthesised speech)")
    splits, saved = load_corpus(path)
    if saved != spec:
        raise UserError(f"cannot resume: {path} was made with other settings ({saved['train_clips']} "
                        f"training clips, {saved['test_clips']} held-out texts, seed {saved['seed']})")
    return splits


def load_corpus(path) -> tuple[dict[str, Split], dict]:
    """(splits, spec) from a file written by `save_corpus`; a damaged file is one UserError."""
    from attnkit.errors import UserError

    try:
        return _load_corpus(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - zip, key and JSON errors of a damaged file come in many types
        raise UserError(f"{path} is corrupt or truncated ({type(e).__name__})") from None


def _load_corpus(path) -> tuple[dict[str, Split], dict]:
    import json

    with np.load(path) as f:
        spec = json.loads(str(f["spec"]))
        out = {}
        for name in ("train", "heldout", "seen"):
            clips = [Clip(**c) for c in json.loads(str(f[f"{name}_clips"]))]
            has_wave = f"{name}_wave" in f.files
            out[name] = Split(clips, f[f"{name}_mel"], f[f"{name}_top"], f[f"{name}_offsets"],
                              f[f"{name}_wave"] if has_wave else None,
                              f[f"{name}_wave_offsets"] if has_wave else None)
    return out, spec
