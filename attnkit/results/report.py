"""The files that report the zoo's results: docs/results/<model>.md from its JSON, and the README's zoo
table (between marker comments) from every model's JSON, so a README figure is always the last measured one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnkit.fsio import atomic_write
from attnkit.results.claims import SPECS, fmt

START, END = "<!-- zoo-results:start -->", "<!-- zoo-results:end -->"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "not met", None: "not measured"}[met]


def result_text(c: dict[str, Any]) -> str:
    """'97.7% ± 0.9 (3 seeds)'; with a baseline, ' vs 98.3% ± 0.0'."""
    def pm(mean, std):
        if mean is None:
            return "—"
        spread = "?" if std is None else f"{100 * std:.2f}" if c["unit"] == "%" else f"{std:.2g}"
        return f"{fmt(mean, c['unit'])} ± {spread}"
    text = f"{pm(c['mean'], c['std'])} ({c['measured_seeds']} seed{'s' if c['measured_seeds'] != 1 else ''})"
    if c["baseline"]:
        text += f" vs {pm(c['baseline_mean'], c['baseline_std'])}"
    return text


def claim_rows(data: dict[str, Any]) -> list[list[str]]:
    """model, claim, goal, result, met / not met, training time: one row per claim (the CLI's final table, the
    README's); the time (every current run of the model, all seeds and arms) on the model's first row only."""
    took = f"{data['wall_s'] / 60:.1f} min" if data.get("wall_s") is not None else ""
    return [[data["model"], c["text"], c["goal"], result_text(c), verdict(c["met"]), took if i == 0 else ""]
            for i, c in enumerate(data.get("claims", []))]


def claim_arm(claim: dict[str, Any]) -> str:
    """The arm whose row shows the claim's per-seed value: its metric's ("ARM:key"), main for a derived one."""
    arm, sep, _ = claim["metric"].partition(":")
    return arm if sep else "main"


def other_arm_baseline(claim: dict[str, Any]) -> str | None:
    """The arm a claim's baseline comes from when it is not the claim's own ("full:test_bpd" for the Image
    Transformer's local 2D against full attention), else None."""
    arm, sep, _ = (claim.get("baseline") or "").partition(":")
    return arm if sep and arm != claim_arm(claim) and claim.get("baseline_per_seed") else None


def seed_cell(claim: dict[str, Any], arm: str, i: int) -> str:
    """Seed i's value in an arm's row: the claim's own in its arm's row, its baseline's in the baseline arm's."""
    if arm == claim_arm(claim):
        return fmt(claim["per_seed"][i], claim["unit"])
    if arm == other_arm_baseline(claim):
        return fmt(claim["baseline_per_seed"][i], claim["unit"])
    return ""


def model_markdown(data: dict[str, Any], pictures: list[Path]) -> str:
    model, rows = data["model"], data["rows"]
    lines = [f"# {model}: results", "",
             f"Reproduce: `{data['command']}` (resumable; a row is re-trained only when the code it depends on "
             "changes). Mean ± standard deviation over the seeds; every baseline comes from the same run.", "",
             "| claim | goal | result | |", "|---|---|---|---|"]
    lines += [f"| {c['text']} | {c['goal']} | {result_text(c)} | **{verdict(c['met'])}** |" for c in data["claims"]]
    headers = [c["metric"] + (f" / {c['baseline']}" if other_arm_baseline(c) else "") for c in data["claims"]]
    lines += ["", "## Each seed", "", "| seed | arm | " + " | ".join(headers)
              + " | wall s | date | commit |", "|---" * (len(data["claims"]) + 5) + "|"]
    for r in rows:
        if r["seed"] not in data["seeds"]:
            continue
        i = data["seeds"].index(r["seed"])
        vals = [seed_cell(c, r["arm"], i) for c in data["claims"]]
        lines.append(f"| {r['seed']} | {r['arm']} | " + " | ".join(vals) + f" | {r['wall_s']:.0f} | {r['date']} "
                     f"| `{r['commit']}` |")
    lines += ["", f"Total training wall time: {data['wall_s']:.0f} s.", "", "## Commands", ""]
    lines += [f"- `{r['command']}`" for r in rows if r["seed"] in data["seeds"]]
    machines = sorted({r["machine"] for r in rows if r["seed"] in data["seeds"]})
    lines += ["", "## Machine", "", *(f"- {m}" for m in machines)]
    if pictures:
        lines += ["", "## Pictures (first seed)", "", *(f"![{p.stem}]({p.name})" for p in pictures)]
    return "\n".join(lines) + "\n"


def write_model_report(results_dir: Path, stem: str, data: dict[str, Any], pictures: list[Path]) -> Path:
    return atomic_write(results_dir / f"{stem}.md", model_markdown(data, pictures))


def zoo_table(results_dir: Path) -> str:
    """The README table: every model of the zoo, its claims as last measured (default flavors only)."""
    lines = ["| model | claim | goal | result (mean ± std) | | time (all runs) |", "|---|---|---|---|---|---|"]
    for model in SPECS:
        path = results_dir / f"{model}.json"
        data = json.loads(path.read_text()) if path.is_file() else None
        if not data or not data.get("claims"):
            lines.append(f"| {model} | | | not measured yet: `attnkit reproduce --model {model}` | | |")
            continue
        for m, claim, goal, result, met, took in claim_rows(data):
            lines.append(f"| [{m}]({results_dir.as_posix()}/{model}.md) | {claim} | {goal} | {result} | {met} | {took} |")
    return "\n".join(lines)


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Replace the text between the markers with the zoo table; False if the README has no markers."""
    text = readme.read_text()
    if START not in text or END not in text:
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{zoo_table(results_dir)}\n{END}{tail}"
    if new != text:
        atomic_write(readme, new)
    return True
