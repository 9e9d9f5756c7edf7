"""Text corpora for the language models: an embedded default (no downloads, ever) or the user's files.

Named corpora ship inside packages that attnkit already depends on, found at run time:
    "austen" (default)  Jane Austen's *Lady Susan* (127 k chars of clean English prose, 67 distinct
                        characters), shipped as austen.txt beside this module (taken from music21's
                        languageExcerpts with the Gutenberg header/footer cut), so GPT needs no extra.
    "python"            the Python standard library's own source (a few MB of code), found via sysconfig.
Any other value is a path: a text file, or a folder whose text files are concatenated in sorted order.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

from attnkit.errors import UserError

DEFAULT_CORPUS = "austen"
CORPORA = ("austen", "python")
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".text", ".csv", ".tsv", ".json", ".html", ".tex", ""}
PYTHON_CORPUS_CHARS = 4_000_000  # enough stdlib source for a small model; reading all of it takes seconds


AUSTEN = Path(__file__).with_name("austen.txt")


def _austen() -> str:
    return AUSTEN.read_text(encoding="utf-8")


def _python_stdlib() -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.glob("*.py")):  # top-level modules only: no tests, no vendored packages
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= PYTHON_CORPUS_CHARS:
            break
    if not parts:
        raise UserError(f"no Python source found under {root}; pass --data PATH")
    return "\n".join(parts)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_text(data: str | None) -> str:
    """The training text for `--data`: None/"austen"/"python" or a file/folder path. Raises UserError."""
    if data is None or data == "austen":
        return _austen()
    if data == "python":
        return _python_stdlib()
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"data not found: {data} (a text file, a folder of text files, or one of "
                        f"{', '.join(CORPORA)})")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise UserError(f"no text files in folder {data}")
        text = "\n".join(_read_file(p) for p in files)
    else:
        text = _read_file(path)
    if not text.strip():
        raise UserError(f"data is empty: {data}")
    return text
