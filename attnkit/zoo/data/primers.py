"""Where a Music Transformer sample starts: `--prompt` text → a primer grid of 4-voice time steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attnkit.errors import UserError
from attnkit.zoo.data import chorales as ch

DEFAULT_PRIMER_STEPS = 32


def primer_grid(prompt: str | None, held_out: list[dict[str, Any]]) -> tuple[np.ndarray, str]:
    """The primer grid (S, 4) and a description of where it came from.

    prompt: None or "" (held-out chorale 0), "test:K[:STEPS]", "scratch", or a 4-part score file[:STEPS];
    held_out: the run's test chorales as saved ({"number", "name", "grid"}).
    """
    prompt = "test:0" if prompt in (None, "") else prompt
    if prompt == "scratch":
        return np.zeros((0, 4), np.int16), "from scratch"
    steps = DEFAULT_PRIMER_STEPS
    if prompt.startswith("test:"):
        parts = prompt.split(":")
        k = parts[1]
        if len(parts) > 3 or not k.isdigit() or int(k) >= len(held_out) or \
                (len(parts) == 3 and not parts[2].isdigit()):
            raise UserError(f"--prompt {prompt}: use test:K or test:K:STEPS with K in "
                            f"0..{len(held_out) - 1} (the held-out chorales)")
        steps = int(parts[2]) if len(parts) == 3 else steps
        c = held_out[int(k)]
        grid = np.array(c["grid"], dtype=np.int16).reshape(-1, 4)
        source = f"held-out chorale {c['name']} (no. {c['number']})"
    else:
        path = Path(prompt)
        head, _, tail = prompt.rpartition(":")
        if not path.is_file() and head and tail.isdigit():
            path, steps = Path(head), int(tail)
        if not path.is_file():
            raise UserError(f"--prompt {prompt!r}: use test:K[:STEPS], scratch, or a 4-part score file[:STEPS]")
        from music21 import converter
        try:
            grid = ch.chorale_to_grid(converter.parse(str(path)))
        except ch.ChoraleSkipped as e:
            raise UserError(f"--prompt {path}: not a clean 4-voice score on the 16th grid ({e})") from e
        source = str(path)
    if steps < 1:
        raise UserError(f"--prompt {prompt}: the primer needs at least 1 step")
    return grid[:steps], f"first {min(steps, len(grid))} steps of {source}"
