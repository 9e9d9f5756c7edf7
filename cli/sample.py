"""`attnkit sample`: generic flags map 1:1 onto `attnkit.config.SampleConfig`; the work lives in `attnkit.engine.sample`.

A model's own settings are its sample options (`Task.SampleOptions`): `--opt name=value` (repeatable) sets any of
them, and the older flags --prompt, --beam, --label, ... set the option of the same name. `--list-options` shows
the run's.
"""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from attnkit.cli.train import parse_opts
from attnkit.config import MODEL_SAMPLE_FLAGS, SampleConfig
from attnkit.errors import UserError

Opt = typer.Option


def sample(
    run: Annotated[str, Opt(help="Run directory written by `attnkit train` (default: the newest run).")] = "runs/latest",
    opt: Annotated[Optional[list[str]], Opt("--opt", help="A sample option of the run's model, name=value (repeatable); see --list-options.")] = None,
    list_options: Annotated[bool, Opt("--list-options", help="Print the run's model's sample options and exit.")] = False,
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
    beam: Annotated[Optional[int], Opt(help="Beam size (encdec, asr; default 1: greedy).")] = None,
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
    flags = {k: v for k, v in locals().items() if k not in ("opt", "list_options")}  # before any import adds a local
    if list_options:
        print_sample_options(run)
        return
    from attnkit.engine.sample import run_sampling

    run_sampling(sample_config(flags, parse_opts(opt or [])))


def sample_config(flags: dict, opts: dict[str, str]) -> SampleConfig:
    """The SampleConfig of the command line: a model-specific flag that is set becomes the option of its name."""
    options = {k: flags.pop(k) for k in MODEL_SAMPLE_FLAGS}
    options = {k: v for k, v in options.items() if v not in (None, False)}  # unset (a flag's False is its default)
    both = sorted(set(options) & set(opts))
    if both:
        raise UserError(f"--{both[0].replace('_', '-')} and --opt {both[0]}=... both set {both[0]}; pass one")
    return SampleConfig(**flags, options={**options, **opts})


def print_sample_options(run: str) -> None:
    from rich.console import Console

    from attnkit.cli.train import options_table
    from attnkit.engine.sample import run_task

    task_cls = run_task(run)
    Console().print(options_table(task_cls.SampleOptions, f"{task_cls.name} sample options: --opt NAME=VALUE "
                                  f"(or the flag of that name)", f"{task_cls.name} has no sample options of its own"))
