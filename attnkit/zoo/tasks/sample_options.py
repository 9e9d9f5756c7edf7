"""What each model's `sample` takes beyond the generic `SampleConfig` fields: its `Task.SampleOptions`.

`attnkit sample --opt name=value` sets one (`--list-options` lists the run's); the older flags (--prompt, --beam,
--label, --top-p, --target-return, --audio, --say, --voice, --attention-png) set the option of the same name. The
engine checks and types them against these dataclasses before the run loads (`attnkit.engine.sample`), and a task
reads them as `self.sample_options(cfg)`. Value checks that need no model live in `__post_init__`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnkit.errors import UserError

LENGTH_PENALTY = 0.6  # GNMT's α (Wu et al. 2016 use 0.6 to 0.7)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _check_top_p(top_p: float | None) -> None:
    if top_p is not None and not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1], got {top_p}")


def _check_beam(beam: int) -> None:
    if beam < 1:
        raise UserError(f"--beam must be at least 1, got {beam}")


@dataclass
class NoSampleOptions:
    """A model whose `sample` takes only the generic settings."""


@dataclass
class TopPSampleOptions:
    prompt: str | None = _opt(None, "text to continue (default a newline)")
    top_p: float | None = _opt(None, "nucleus sampling: keep the smallest set of tokens with mass p")

    def __post_init__(self):
        _check_top_p(self.top_p)


@dataclass
class GPTSampleOptions(TopPSampleOptions):
    compile: bool = _opt(False, "torch.compile the one-token decode step (seconds to compile; then faster on "
                                "long contexts, see BENCHMARKS.md)")


@dataclass
class BERTSampleOptions:
    prompt: str | None = _opt(None, "text with [MASK] tokens to fill (default: held-out sentences, masked)")


@dataclass
class EncDecSampleOptions:
    prompt: str | None = _opt(None, "a source to translate, e.g. 1204 (default: held-out sources)")
    beam: int = _opt(1, "beam size (1: greedy)")
    alpha: float = _opt(LENGTH_PENALTY, "beam search's length penalty α (GNMT)")

    def __post_init__(self):
        _check_beam(self.beam)


@dataclass
class MusicSampleOptions(TopPSampleOptions):  # GPT's top_p, its own prompt
    prompt: str | None = _opt(None, "test:K (held-out chorale K; test:K:S its first S steps), scratch, "
                                    "or a MusicXML/MIDI/kern FILE[:S]")
    attention_png: bool = _opt(False, "also write an attention heatmap PNG")


@dataclass
class ICLSampleOptions:
    prompt: str | None = _opt(None, "'x=y; x=y; ...; x_query' with comma-separated coordinates "
                                    "(default: the error-versus-k and agreement tables and plots)")


@dataclass
class ImageSampleOptions:
    label: int | None = _opt(None, "class to draw (default: one row per class)")


@dataclass
class DTSampleOptions:
    target_return: str | None = _opt(None, "returns to condition on, comma list (default: the task's targets)")


@dataclass
class ASRSampleOptions:
    audio: list[str] | None = _opt(None, "WAV file(s) or globs to transcribe")
    say: str | None = _opt(None, "text to speak, then transcribe")
    voice: str | None = _opt(None, "voice to speak with")
    beam: int = _opt(1, "beam size (1: greedy)")
    attention_png: bool = _opt(False, "also write an attention heatmap PNG")

    def __post_init__(self):
        _check_beam(self.beam)
