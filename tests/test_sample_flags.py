"""`attnkit sample` refuses a model-specific flag the run's model does not read, naming the ones it does."""
import pytest

from attnkit.config import SampleConfig
from attnkit.engine.sample import MODEL_SAMPLE_FLAGS, check_sample_flags
from attnkit.errors import UserError
from attnkit.zoo.tasks import TASKS, get_task

SET = {"prompt": "x", "beam": 4, "label": 3, "top_p": 0.9, "target_return": "100", "audio": "a.wav", "say": "hi",
       "voice": "f1", "attention_png": True}


def test_every_model_flag_has_a_non_default_value_here():
    assert set(SET) == set(MODEL_SAMPLE_FLAGS)
    assert all(SET[f] != getattr(SampleConfig(), f) for f in SET)


@pytest.mark.parametrize("model", list(TASKS))
def test_flags_the_model_reads_pass_and_the_others_are_refused(model):
    task_cls = get_task(model)
    assert set(task_cls.sample_flags) <= set(MODEL_SAMPLE_FLAGS)
    check_sample_flags(SampleConfig(**{f: SET[f] for f in task_cls.sample_flags}), task_cls)
    check_sample_flags(SampleConfig(temperature=0.5, top_k=3, seed=1, num_samples=2), task_cls)  # generic ones
    takes = ", ".join("--" + f.replace("_", "-") for f in task_cls.sample_flags) or "none of its own"
    for flag in set(MODEL_SAMPLE_FLAGS) - set(task_cls.sample_flags):
        message = (f"--{flag.replace('_', '-')} does not apply to a {model} run; its model-specific sample flags: "
                   f"{takes}")
        with pytest.raises(UserError) as e:
            check_sample_flags(SampleConfig(**{flag: SET[flag]}), task_cls)
        assert str(e.value) == message


def test_the_named_cases_of_the_issue():
    """--prompt on dt and vit, --beam and --target-return on gpt were silently ignored."""
    for model, flag in (("dt", "prompt"), ("vit", "prompt"), ("gpt", "beam"), ("gpt", "target_return")):
        with pytest.raises(UserError, match=f"does not apply to a {model} run"):
            check_sample_flags(SampleConfig(**{flag: SET[flag]}), get_task(model))
