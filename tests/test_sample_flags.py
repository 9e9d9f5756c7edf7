"""`attnkit sample`'s model-specific settings: each model's SampleOptions, set by `--opt name=value` or by the flag
of that name; one the run's model does not take is refused, naming the ones it does."""
import dataclasses

import pytest

from attnkit.cli.sample import sample_config
from attnkit.config import MODEL_SAMPLE_FLAGS, SampleConfig
from attnkit.engine.sample import resolve_sample_options
from attnkit.errors import UserError
from attnkit.zoo.tasks import TASKS, get_task
from attnkit.zoo.tasks.encdec import EncDecTask
from attnkit.zoo.tasks.gpt import GPTTask

SET = {"prompt": "x", "beam": 4, "label": 3, "top_p": 0.9, "target_return": "100", "audio": ["a.wav"], "say": "hi",
       "voice": "f1", "attention_png": True}


def _defaults(task_cls) -> dict:
    return dataclasses.asdict(task_cls.SampleOptions())


def test_every_model_flag_is_some_models_option_with_a_non_default_value_here():
    assert set(SET) == set(MODEL_SAMPLE_FLAGS)
    for flag in MODEL_SAMPLE_FLAGS:
        readers = [get_task(m) for m in TASKS if flag in _defaults(get_task(m))]
        assert readers and all(SET[flag] != _defaults(t)[flag] for t in readers), flag


@pytest.mark.parametrize("model", list(TASKS))
def test_flags_the_model_reads_pass_and_the_others_are_refused(model):
    task_cls = get_task(model)
    names = list(_defaults(task_cls))
    mine = {f: SET[f] for f in MODEL_SAMPLE_FLAGS if f in names}
    assert resolve_sample_options(mine, task_cls) == {**_defaults(task_cls), **mine}
    assert resolve_sample_options({}, task_cls) == _defaults(task_cls)  # generic settings only
    takes = ", ".join("--" + f.replace("_", "-") if f in MODEL_SAMPLE_FLAGS else f"--opt {f}=VALUE" for f in names)
    for flag in set(MODEL_SAMPLE_FLAGS) - set(names):
        message = (f"--{flag.replace('_', '-')} does not apply to a {model} run; its model-specific sample settings: "
                   f"{takes or 'none of its own'}")
        with pytest.raises(UserError) as e:
            resolve_sample_options({flag: SET[flag]}, task_cls)
        assert str(e.value) == message


def test_the_named_cases_of_the_issue():
    """--prompt on dt and vit, --beam and --target-return on gpt were silently ignored."""
    for model, flag in (("dt", "prompt"), ("vit", "prompt"), ("gpt", "beam"), ("gpt", "target_return")):
        with pytest.raises(UserError, match=f"does not apply to a {model} run"):
            resolve_sample_options({flag: SET[flag]}, get_task(model))
    with pytest.raises(UserError, match="sample settings: --prompt, --beam, --opt alpha=VALUE$"):
        resolve_sample_options({"label": 3}, EncDecTask)


def test_opt_values_are_typed_and_checked_as_trains_are():
    assert resolve_sample_options({"beam": "5", "alpha": "0.7"}, EncDecTask) == {"prompt": None, "beam": 5,
                                                                                 "alpha": 0.7}
    assert resolve_sample_options({"audio": "a.wav"}, get_task("asr"))["audio"] == ["a.wav"]
    with pytest.raises(UserError) as e:
        resolve_sample_options({"temperature": "0.5"}, GPTTask)
    assert str(e.value) == ("unknown sample option 'temperature' for model gpt; valid sample options: prompt, top_p, "
                            "compile")
    with pytest.raises(UserError) as e:
        resolve_sample_options({"beam": "wide"}, EncDecTask)
    assert str(e.value) == "--opt beam must be an integer, got 'wide' (valid sample options: prompt, beam, alpha)"
    with pytest.raises(UserError, match="none \\(this model has no sample options\\)"):
        resolve_sample_options({"x": "1"}, get_task("vit"))
    with pytest.raises(UserError, match=r"^--beam must be at least 1, got 0$"):
        resolve_sample_options({"beam": 0}, EncDecTask)
    with pytest.raises(UserError, match=r"^--top-p must be in \(0, 1\], got 1.5$"):
        resolve_sample_options({"top_p": "1.5"}, GPTTask)


def _flags(**set_flags) -> dict:
    """The locals `attnkit sample` collects with nothing but `set_flags` given."""
    generic = {f.name: f.default for f in dataclasses.fields(SampleConfig) if f.name != "options"}
    return {**generic, **dict.fromkeys(MODEL_SAMPLE_FLAGS), "attention_png": False, **set_flags}


def test_the_flags_become_options_beside_opt():
    cfg = sample_config(_flags(prompt="Hi", beam=3, seed=7), {"alpha": "0.5"})
    assert cfg.options == {"prompt": "Hi", "beam": 3, "alpha": "0.5"} and cfg.seed == 7
    assert sample_config(_flags(), {}).options == {}  # unset flags set nothing (--attention-png's False included)
    with pytest.raises(UserError) as e:
        sample_config(_flags(top_p=0.5), {"top_p": "0.9"})
    assert str(e.value) == "--top-p and --opt top_p=... both set top_p; pass one"
