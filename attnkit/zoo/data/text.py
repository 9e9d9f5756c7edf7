"""Text corpora for the language models: an embedded default (no downloads, ever) or the user's files.

Named corpora ship inside packages that attnkit already depends on, found at run time:
    "austen" (default)  Jane Austen's *Lady Susan* (127 k chars of clean English prose, 67 distinct
                        characters), shipped as austen.txt beside this module (taken from music21's
                        languageExcerpts with the Gutenberg header/footer cut), so GPT needs no extra.
    "python"            the Python standard library's own source (a few MB of code), found via sysconfig.
Any other value is a path: a text file, or a folder whose text files are concatenated in sorted order.

Document corpora are lists of separate texts (for packed training, `attnkit.zoo.tasks.gpt`):
    "python-functions"  every function and method of the standard library's top-level modules whose source
                        (unindented, decorators left out) has 32 to 512 characters: ~4.7 k documents, ~0.9 M chars,
                        in file order then source order (deterministic for one Python version).
"""
from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

from attnkit.errors import UserError

DEFAULT_CORPUS = "austen"
CORPORA = ("austen", "python")
DOCUMENT_CORPORA = ("python-functions",)
FUNCTION_CHARS = (32, 512)  # the python-functions corpus: functions of this many characters, inclusive
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".text", ".csv", ".tsv", ".json", ".html", ".tex", ""}
PYTHON_CORPUS_CHARS = 4_000_000  # enough stdlib source for a small model; reading all of it takes seconds


AUSTEN = Path(__file__).with_name("austen.txt")


def _austen() -> str:
    return AUSTEN.read_text(encoding="utf-8")


def _stdlib_sources():
    """(path, source) of the standard library's top-level modules, in sorted order (no tests, no vendored packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.glob("*.py")):
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def python_files(chars: int = PYTHON_CORPUS_CHARS) -> list[str]:
    """The sources of the standard library's top-level modules, one string a file, in sorted order, until they
    hold `chars` characters in all (the "python" corpus, file by file: BERT splits it by file)."""
    parts, total = [], 0
    for _, text in _stdlib_sources():
        parts.append(text)
        total += len(text)
        if total >= chars:
            break
    if not parts:
        raise UserError(f"no Python source found under {sysconfig.get_paths()['stdlib']}; pass --data PATH")
    return parts


def load_files(data: str | None) -> list[str] | None:
    """The separate files of a corpus that has them ("python"), or None for a running text."""
    return python_files() if data == "python" else None


def _functions(tree: ast.AST):
    """Module-level functions and methods (not functions nested in functions), in source order."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node)


def _python_functions() -> list[str]:
    lo, hi = FUNCTION_CHARS
    docs = []
    for _, text in _stdlib_sources():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines()
        for node in _functions(tree):
            col = node.col_offset  # a method's indentation; string lines indented less keep theirs
            doc = "\n".join(line[col:] if not line[:col].strip() else line
                            for line in lines[node.lineno - 1:node.end_lineno])
            if lo <= len(doc) <= hi:
                docs.append(doc)
    if not docs:
        raise UserError(f"no Python functions found under {sysconfig.get_paths()['stdlib']}; pass --data PATH")
    return docs


def load_documents(data: str | None) -> list[str] | None:
    """The documents of a document corpus (`DOCUMENT_CORPORA`), or None when `data` names a running text."""
    return _python_functions() if data == "python-functions" else None


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
        return "\n".join(python_files())
    if data in DOCUMENT_CORPORA:
        return "\n".join(load_documents(data))
    path = Path(data).expanduser()
    if not path.exists():
        raise UserError(f"data not found: {data} (a text file, a folder of text files, or one of "
                        f"{', '.join(CORPORA + DOCUMENT_CORPORA)})")
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
