"""Bach's four-part chorales as token sequences, like the JSB Chorales set (music21's own corpus, offline).

Encoding (one chorale):
    grid:   (T, 4) int tokens, one row per 16th note, columns soprano, alto, tenor, bass.
            A cell is PITCH(p) where a note with MIDI pitch p starts, HOLD where the voice's note (or rest)
            from the previous step continues, REST where the voice is silent. A tied note is one held note.
    tokens: [BOS, S0, A0, T0, B0, S1, A1, T1, B1, ..., EOS]: the grid read row by row (raster scan,
            Huang et al. 2018), so token 1 + 4t + v is voice v at step t and the same voice one step back
            is always 4 tokens earlier - the kind of fixed distance relative attention learns directly.

Vocabulary (93 tokens, shared by the four voices): PAD, BOS, EOS, REST, HOLD, then PITCH(21..108), the
piano's range. This differs from the JSB Chorales pickle used by the paper (which repeats a held pitch at
every step and has no separate hold token), so per-token NLLs are comparable only loosely.

Corpus: `music21.corpus.chorales.Iterator()` lists 371 chorales by Riemenschneider number; a few numbers
point at the same file (those later duplicates are dropped, so no piece is in two splits) and some are
not clean four-voice settings (extra instrumental parts, chords inside a voice, tuplets off the 16th grid,
grace notes); those are skipped, with the reason kept in the cache. Split by number: n % 10 == 0 -> test,
n % 10 == 1 -> val, else train. Parsing takes a while, so grids are cached per chorale number in
$ATTNKIT_CACHE (default ~/.cache/attnkit)/chorales-v1.npz; asking for a subset parses only what is missing.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnkit.errors import UserError
from attnkit.fsio import atomic_write, make_dirs

PAD, BOS, EOS, REST, HOLD = 0, 1, 2, 3, 4
LOWEST, HIGHEST = 21, 108  # MIDI pitches A0..C8
PITCH0 = 5  # token of MIDI pitch LOWEST
VOCAB_SIZE = PITCH0 + HIGHEST - LOWEST + 1  # 93
VOICES = ("Soprano", "Alto", "Tenor", "Bass")
STEPS_PER_QUARTER = 4  # 16th-note grid
N_CHORALES = 371
CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
SPECIAL_NAMES = {PAD: "PAD", BOS: "BOS", EOS: "EOS", REST: "REST", HOLD: "HOLD"}


class ChoraleSkipped(Exception):
    """A chorale that is not a clean four-voice setting on the 16th-note grid."""


def pitch_token(midi: int) -> int:
    return PITCH0 + midi - LOWEST


def token_pitch(token: int) -> int | None:
    """MIDI pitch of a PITCH token, None for the specials."""
    return token - PITCH0 + LOWEST if token >= PITCH0 else None


def token_name(token: int) -> str:
    if token in SPECIAL_NAMES:
        return SPECIAL_NAMES[token]
    from music21 import pitch
    return pitch.Pitch(midi=token_pitch(token)).nameWithOctave


def split_of(number: int) -> str:
    """The fixed split of Riemenschneider chorale `number` (1..371)."""
    return {0: "test", 1: "val"}.get(number % 10, "train")


# ---- chorale <-> grid ----------------------------------------------------------------------------------
def _steps(quarter_length, what: str) -> int:
    steps = float(quarter_length) * STEPS_PER_QUARTER
    if abs(steps - round(steps)) > 1e-6:
        raise ChoraleSkipped(f"{what} at {float(quarter_length)} quarters is off the 16th-note grid")
    return int(round(steps))


def chorale_to_grid(score) -> np.ndarray:
    """A music21 Score with exactly four one-voice parts -> (T, 4) int16 grid (see module docstring).

    Raises ChoraleSkipped when the score is not a clean four-voice setting on the 16th grid.
    """
    from music21 import chord, note

    parts = list(score.parts)
    if len(parts) != 4:
        raise ChoraleSkipped(f"{len(parts)} parts, not 4")
    T = _steps(score.highestTime, "end")
    grid = np.full((T, 4), REST, dtype=np.int16)
    for v, part in enumerate(parts):
        covered = np.zeros(T, dtype=bool)
        for el in part.flatten().notesAndRests:
            if el.duration.isGrace or el.quarterLength == 0:
                raise ChoraleSkipped(f"grace note in {VOICES[v]}")
            if isinstance(el, chord.Chord):
                raise ChoraleSkipped(f"chord in {VOICES[v]}")
            start = _steps(el.offset, "a note start")
            stop = start + _steps(el.quarterLength, "a note length")
            if covered[start:stop].any():
                raise ChoraleSkipped(f"overlapping notes in {VOICES[v]}")
            covered[start:stop] = True
            if isinstance(el, note.Rest):
                continue  # REST already
            midi = el.pitch.midi
            if not LOWEST <= midi <= HIGHEST:
                raise ChoraleSkipped(f"pitch {midi} outside the piano")
            tied_on = el.tie is not None and el.tie.type in ("stop", "continue")
            grid[start:stop, v] = HOLD
            if not tied_on or start == 0 or token_pitch_at(grid, start - 1, v) != midi:
                grid[start, v] = pitch_token(midi)
    return grid


def token_pitch_at(grid: np.ndarray, t: int, v: int) -> int | None:
    """The MIDI pitch sounding in voice v at step t (following HOLDs back), or None for silence."""
    while t >= 0 and grid[t, v] == HOLD:
        t -= 1
    return None if t < 0 else token_pitch(int(grid[t, v]))


def voice_events(column: np.ndarray) -> list[tuple[int, int, int | None]]:
    """One voice's column of grid tokens -> [(start step, length in steps, MIDI pitch or None for rest)].

    Lenient, so any sampled column decodes: HOLD after a rest (or at the start) extends the rest, and
    tokens that are not REST/HOLD/PITCH are read as REST.
    """
    events: list[list] = []
    for t, tok in enumerate(int(x) for x in column):
        if tok == HOLD and events:
            events[-1][1] += 1
        elif tok >= PITCH0:
            events.append([t, 1, token_pitch(tok)])
        elif events and events[-1][2] is None:
            events[-1][1] += 1  # REST (or HOLD/special after a rest) extends the rest
        else:
            events.append([t, 1, None])
    return [tuple(e) for e in events]


def grid_to_score(grid: np.ndarray, title: str | None = None, time_signature: str = "4/4"):
    """(T, 4) grid -> music21 Score with four parts (S, A, T, B); notes span their HOLDs."""
    from music21 import clef, instrument, metadata, meter, note, stream

    score = stream.Score()
    if title:
        score.insert(0, metadata.Metadata(title=title))
    clefs = (clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef)
    for v, name in enumerate(VOICES):
        part = stream.Part(id=name)
        part.partName = name
        inst = instrument.Instrument()
        inst.partName = name
        part.insert(0, inst)
        part.insert(0, clefs[v]())
        part.insert(0, meter.TimeSignature(time_signature))
        for start, length, midi in voice_events(grid[:, v]):
            el = note.Rest() if midi is None else note.Note(midi)
            el.quarterLength = length / STEPS_PER_QUARTER
            part.insert(start / STEPS_PER_QUARTER, el)
        score.insert(0, part)
    return score


def grid_to_tokens(grid: np.ndarray, bos: bool = True, eos: bool = True) -> np.ndarray:
    """(T, 4) -> (1 + 4T + 1,) int64 raster scan."""
    body = np.asarray(grid, dtype=np.int64).reshape(-1)
    return np.concatenate([[BOS] if bos else [], body, [EOS] if eos else []]).astype(np.int64)


def tokens_to_grid(tokens) -> np.ndarray:
    """Raster-scan tokens (BOS/EOS/PAD anywhere are dropped; a ragged last step is cut) -> (T, 4) grid."""
    body = np.asarray([int(t) for t in tokens if int(t) not in (PAD, BOS, EOS)], dtype=np.int16)
    T = len(body) // 4
    return body[: 4 * T].reshape(T, 4)


def pitch_range(grid: np.ndarray) -> tuple[int, int] | None:
    """(lowest, highest) MIDI pitch in the grid, None if it has no note."""
    pitches = grid[grid >= PITCH0]
    if pitches.size == 0:
        return None
    return int(pitches.min()) - PITCH0 + LOWEST, int(pitches.max()) - PITCH0 + LOWEST


def write_midi(grid: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_to_score(grid, title=title).write("midi", fp=str(path))
    return path


# ---- corpus + cache --------------------------------------------------------------------------------------
@dataclass
class Chorale:
    number: int       # Riemenschneider number, 1..371
    name: str         # corpus file, e.g. "bach/bwv269"
    grid: np.ndarray  # (T, 4) int16

    @property
    def split(self) -> str:
        return split_of(self.number)


def cache_dir() -> Path:
    return Path(os.environ.get("ATTNKIT_CACHE") or Path.home() / ".cache" / "attnkit")


def cache_path() -> Path:
    return cache_dir() / f"chorales-v{CACHE_VERSION}.npz"


def _read_cache(path: Path) -> dict[int, tuple[str, np.ndarray | None, str]]:
    """number -> (name, grid or None when skipped, skip reason)."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            numbers, names, reasons = z["numbers"], z["names"], z["reasons"]
            offsets, flat = z["offsets"], z["grids"]
        out = {}
        for i, n in enumerate(numbers):
            a, b = int(offsets[i]), int(offsets[i + 1])
            out[int(n)] = (str(names[i]), flat[a:b] if not reasons[i] else None, str(reasons[i]))
    except Exception:  # noqa: BLE001 - a cut-short or damaged cache (zip, key, shape errors) is parsed again
        return {}
    return out


def _write_cache(path: Path, entries: dict[int, tuple[str, np.ndarray | None, str]]) -> None:
    numbers = sorted(entries)
    grids = [entries[n][1] if entries[n][1] is not None else np.zeros((0, 4), np.int16) for n in numbers]
    offsets = np.cumsum([0] + [len(g) for g in grids])
    buffer = io.BytesIO()
    np.savez(buffer, numbers=np.array(numbers, np.int32), names=np.array([entries[n][0] for n in numbers]),
             reasons=np.array([entries[n][2] for n in numbers]), offsets=offsets,
             grids=np.concatenate(grids).astype(np.int16) if grids else np.zeros((0, 4), np.int16))
    atomic_write(make_dirs(path.parent) / path.name, buffer.getvalue())  # parallel workers never see half a file


def _corpus_names() -> list[str]:
    from music21 import corpus
    return [str(n) for n in corpus.chorales.Iterator(returnType="filename")]


def load_chorales(numbers=None, console=None, progress: bool = True) -> list[Chorale]:
    """Clean chorales among Riemenschneider `numbers` (default: all 371), parsing only uncached ones.

    Returns them in number order; skipped and duplicate numbers are left out.
    """
    numbers = list(range(1, N_CHORALES + 1)) if numbers is None else sorted(set(int(n) for n in numbers))
    if any(not 1 <= n <= N_CHORALES for n in numbers):
        raise ValueError(f"chorale numbers must be in 1..{N_CHORALES}")
    path = cache_path()
    cached = _read_cache(path)
    missing = [n for n in numbers if n not in cached]
    if missing:
        cached.update(_parse(missing, console, progress))
        _write_cache(path, cached)
    # A number whose file an earlier number already uses is a duplicate (checked over all cached numbers,
    # so a subset and the full corpus agree on which copy is kept).
    first_number: dict[str, int] = {}
    for n in sorted(cached):
        first_number.setdefault(cached[n][0], n)
    out = []
    for n in numbers:
        name, grid, reason = cached[n]
        if grid is not None and first_number[name] == n:
            out.append(Chorale(n, name, grid))
    return out


def _parse(numbers: list[int], console=None, progress: bool = True) -> dict[int, tuple[str, np.ndarray | None, str]]:
    from music21 import corpus
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console if console is not None else Console(stderr=True)  # stdout stays for results
    names = _corpus_names()
    parsed = {}
    start = time.perf_counter()
    with Progress(TextColumn("parsing Bach chorales"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not progress, transient=False) as bar:
        job = bar.add_task("parse", total=len(numbers))
        for n in numbers:
            name = names[n - 1]
            try:
                parsed[n] = (name, chorale_to_grid(corpus.parse(name)), "")
            except ChoraleSkipped as e:
                parsed[n] = (name, None, str(e) or "skipped")
            bar.advance(job)
    if progress:
        skipped = sum(1 for v in parsed.values() if v[1] is None)
        console.print(f"parsed {len(numbers)} chorales in {time.perf_counter() - start:.1f}s "
                      f"({skipped} skipped); cached in {cache_path()}")
    return parsed


def corpus_splits(numbers=None, console=None, progress: bool = True) -> dict[str, list[Chorale]]:
    chorales = load_chorales(numbers, console=console, progress=progress)
    return {s: [c for c in chorales if c.split == s] for s in SPLITS}


def parse_data_spec(spec: str | None) -> list[int] | None:
    """`--data` for the music model: None / "chorales" = all 371; "chorales:N" = numbers 1..N (a quick
    subset for tests and the debug flavor)."""
    if spec in (None, "", "chorales"):
        return None
    if spec.startswith("chorales:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = 0
        if 10 <= n <= N_CHORALES:
            return list(range(1, n + 1))
        raise UserError(f"--data {spec}: N in chorales:N must be an integer from 10 to {N_CHORALES} "
                         "(the first N chorales; at least one of them must be in each split)")
    raise UserError(f"--data {spec!r}: the music model reads Bach chorales from music21; "
                     "use 'chorales' or 'chorales:N' (the first N)")
