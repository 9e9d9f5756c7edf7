"""Optional dependencies: which pip extra brings each module, so a missing one is a one-line hint."""
from __future__ import annotations

# Top-level module name -> extra of pyproject.toml that installs it.
EXTRAS: dict[str, str] = {
    "music21": "zoo", "sklearn": "zoo", "sacrebleu": "zoo", "matplotlib": "zoo", "gymnasium": "zoo",
    "jiwer": "zoo", "scipy": "zoo", "espeakng_loader": "zoo",
    "transformers": "hf",
}


def missing_extra_message(error: ModuleNotFoundError) -> str | None:
    """`pip install 'attnkit[zoo]'`-style advice for a missing optional module; None if it is not optional."""
    top = (error.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"this command needs {top}, part of the {extra!r} extra: pip install 'attnkit[{extra}]'"
