"""Two writers on one run directory, N times: exactly one `attnkit train` must train, the other must be refused
with one line (issue #26's goal: every time over 20 races).

Each race starts two fresh debug trainings into the same --out at once (as subprocesses, never forked). The
loser is refused either because the winner holds the lock ("in use") or, if it started after the winner had
finished, because the directory already holds a run. Prints one row per race and the totals; exits 1 if any
race broke the rule. (A --resume beside a running train: tests/cli/test_faults.py.)

    flock /work/heavy.lock .venv/bin/python benchmarks/run_dir_race.py --races 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEBUG = ["--flavor", "debug", "--max-steps", "4", "--eval-interval", "2", "--eval-batches", "1"]


def attnkit(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "attnkit.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def race(out: Path, second: list[str], first: list[str]) -> tuple[bool, str]:
    """(the rule held, how the loser was refused)."""
    procs = [attnkit(*first), attnkit(*second)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    losers = [e for c, e in results if c != 0]
    loser = losers[0] if losers else ""
    one_line = loser.count("\n") == 1 and "Traceback" not in loser
    kind = ("in use" if " is in use by process " in loser else "already a run" if "already holds" in loser
            else loser.strip()[:80] or "-")
    latest = out / "checkpoints" / "latest.json"
    step = json.loads(latest.read_text())["step"] if latest.is_file() else None
    leftovers = sorted(p.name for p in out.parent.iterdir() if p.name not in (out.name, "latest"))
    return codes == [0, 1] and one_line and kind != "-" and step == 4 and not leftovers, kind


def main(argv: list[str] | None = None) -> int:
    """Returns how many races held (exactly one trained, the other was refused in one line)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--races", type=int, default=20)
    args = ap.parse_args(argv)
    ok, kinds, t0 = 0, {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.races):
            out = Path(tmp) / f"race{i}" / "gpt"
            fresh = ["train", *DEBUG, "--out", str(out)]
            held, kind = race(out, fresh, fresh)
            ok += held
            kinds[kind] = kinds.get(kind, 0) + 1
            print(f"race {i + 1:>2}  {'ok' if held else 'BROKEN':<7} loser: {kind}", flush=True)
    print(f"{ok}/{args.races} races: exactly one trained, the other refused in one line; "
          f"refusals {kinds}; {time.perf_counter() - t0:.0f} s wall")
    return ok


if __name__ == "__main__":
    races = 20 if "--races" not in sys.argv else int(sys.argv[sys.argv.index("--races") + 1])
    sys.exit(0 if main() == races else 1)
