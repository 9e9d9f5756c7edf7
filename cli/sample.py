"""`attnkit sample`: flags map 1:1 onto `attnkit.config.SampleConfig`; the work lives in `attnkit.engine.sample`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from attnkit.config import SampleConfig

Opt = typer.Option


def sample(
    run: Annotated[str, Opt(help="Run directory written by `attnkit train` (default: the newest run).")] = "runs/latest",
    prompt: Annotated[Optional[str], Opt(help=(
        "What the model starts from. gpt: text to continue (default a newline). bert: text with \\[MASK] "
        "tokens to fill. encdec: a source to translate, e.g. 1204 (default: held-out sources). music: test:K "
        "(held-out chorale K; test:K:S its first S steps), scratch, or a MusicXML/MIDI/kern FILE\\[:S]. icl: "
        "'x=y; x=y; ...; x_query' with comma-separated coordinates. Other models take none."))] = None,
    max_new_tokens: Annotated[int, Opt(help="Tokens to generate.")] = 200,
    temperature: Annotated[float, Opt(help="Softmax temperature; 0 = greedy.")] = 0.8,
    top_k: Annotated[Optional[int], Opt(help="Keep the k most likely tokens.")] = 200,
    top_p: Annotated[Optional[float], Opt(help="Nucleus sampling: keep the smallest set with mass p (gpt, music).")] = None,
    num_samples: Annotated[int, Opt(help="Independent samples.")] = 1,
    seed: Annotated[int, Opt(help="Random seed; the same seed gives the same output.")] = 1337,
    device: Annotated[str, Opt(help="auto, cpu or cuda.")] = "auto",
    beam: Annotated[int, Opt(help="Beam size (encdec, asr).")] = 1,
    label: Annotated[Optional[int], Opt(help="Class to condition on (image model).")] = None,
    out: Annotated[Optional[str], Opt(help="Where to write output files (default: the run directory).")] = None,
    attention_png: Annotated[bool, Opt("--attention-png", help="Also write an attention heatmap PNG (music, asr).")] = False,
    stream: Annotated[bool, Opt("--stream/--no-stream", help="Print tokens as they are generated.")] = True,
    target_return: Annotated[Optional[str], Opt(help="Returns to condition on, comma list (Decision Transformer).")] = None,
    audio: Annotated[Optional[list[str]], Opt(help="WAV file(s) or a glob to transcribe (speech models; repeatable).")] = None,
    say: Annotated[Optional[str], Opt(help="Text to speak (speech models).")] = None,
    voice: Annotated[Optional[str], Opt(help="Voice to speak with (speech models).")] = None,
) -> None:
    """Load a trained run and do what its model does: continue text, fill masks, translate, draw, compose.

    A model-specific flag the run's model does not read (--prompt on a vit run) is an error naming the ones it does.
    """
    cfg = SampleConfig(**locals())  # before any import adds a local
    from attnkit.engine.sample import run_sampling

    run_sampling(cfg)
