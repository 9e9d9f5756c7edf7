"""The one resolution path: flags > --config TOML > saved run > flavor > trainer defaults, options included."""
import dataclasses
import json

import pytest

from attnkit.config import TrainConfig, field_types
from attnkit.errors import UserError
from attnkit.engine.resolve import resolve_config
from attnkit.zoo.tasks import TASKS, get_task
from attnkit.zoo.tasks.base import Flavor
from attnkit.zoo.tasks.bert import BERTTask
from attnkit.zoo.tasks.gpt import GPTOptions
from attnkit.zoo.tasks.npt import NPTTask


def test_gpt2_flavor_resolves_grad_accum_40():
    assert resolve_config(TrainConfig(model="gpt", flavor="gpt2")).grad_accum == 40
    assert resolve_config(TrainConfig(model="gpt", flavor="gpt2", grad_accum=2)).grad_accum == 2
    assert resolve_config(TrainConfig(model="gpt", flavor="debug")).grad_accum == 1  # trainer default


def test_flag_beats_toml_beats_flavor(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nmodel = "gpt"\nflavor = "debug"\nmax_steps = 50\nlr = 0.5\n'
                    '[options]\nposition = "rotary"\n')
    cfg = resolve_config(TrainConfig(max_steps=7), config_file=toml)
    assert cfg.max_steps == 7 and cfg.lr == 0.5 and cfg.batch_size == 4  # flag, TOML, flavor
    assert cfg.options["position"] == "rotary" and cfg.out == "runs/gpt"
    flagged = resolve_config(TrainConfig(options={"position": "learned"}), config_file=toml)
    assert flagged.options["position"] == "learned"
    assert resolve_config(cfg) == cfg  # resolving twice changes nothing


def test_flavor_options_and_string_values_are_typed():
    assert resolve_config(TrainConfig(model="npt", flavor="debug")).options["folds"] == 2
    cfg = resolve_config(TrainConfig(model="npt", flavor="debug", options={"folds": "3", "target_shift": "1.5",
                                                                             "probe": "lookup"}))
    assert cfg.options["folds"] == 3 and cfg.options["target_shift"] == 1.5
    assert NPTTask(cfg).opts.folds == 3  # the task reads them as self.opts


@pytest.mark.parametrize("cfg,message", [
    (TrainConfig(model="npt", options={"fold": "2"}),
     "unknown option 'fold' for model npt; valid options: target, folds, probe, target_shift, noise, column_types"),
    (TrainConfig(model="npt", options={"folds": "many"}), "--opt folds must be an integer, got 'many' (valid options:"),
    (TrainConfig(model="encdec", options={"position": "x"}),
     "unknown option 'position' for model encdec; valid options: none (this model has no options)"),
    (TrainConfig(model="vit", options={"position": "x"}), "unknown option 'position' for model vit; valid options: tta"),
    (TrainConfig(max_steps="many"), "--max-steps must be an integer, got 'many'"),
])
def test_bad_values_name_the_option(cfg, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        resolve_config(cfg)


@pytest.mark.parametrize("text,message", [
    ('max_steps = "many"\n', "c.toml: max_steps must be an integer, got 'many'"),
    ('[train]\nposition = "rotary"\n', "c.toml: unknown key 'position' (model options go in an [options] table)"),
    ('[train\n', "c.toml is not valid TOML"),
    ('[options]\nfolds = "x"\n[train]\nmodel = "npt"\n', "c.toml: options.folds must be an integer, got 'x'"),
])
def test_toml_errors_name_the_file_and_field(tmp_path, text, message):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        resolve_config(TrainConfig(), config_file=tmp_path / "c.toml")


def test_saved_run_sits_between_flags_and_flavor(tmp_path):
    """On --resume the saved config beats the flavor and loses to flags (and to the TOML)."""
    saved = resolve_config(TrainConfig(model="gpt", flavor="debug", lr=0.123, max_steps=99,
                                       batch_size=3, out=str(tmp_path)))
    (tmp_path / "config.json").write_text(json.dumps({"task": "gpt", "train": dataclasses.asdict(saved), "model": {}}))
    (tmp_path / "c.toml").write_text("eval_interval = 7\n")
    cfg = resolve_config(TrainConfig(out=str(tmp_path), resume=True, max_steps=5), config_file=tmp_path / "c.toml")
    assert (cfg.model, cfg.flavor, cfg.lr, cfg.max_steps, cfg.eval_interval) == ("gpt", "debug", 0.123, 5, 7)
    assert cfg.batch_size == 3 and cfg.warmup_steps == 2  # saved beats the flavor's 4; the flavor still fills


def test_a_task_picks_its_flavor_from_the_options_when_none_is_named():
    assert resolve_config(TrainConfig(model="npt", options={"probe": "lookup"})).flavor == "lookup"
    assert resolve_config(TrainConfig(model="npt", options={"probe": "lookup"}, data="wine")).flavor == "small"
    assert resolve_config(TrainConfig(model="npt", flavor="debug", options={"probe": "lookup"})).flavor == "debug"
    assert resolve_config(TrainConfig(model="npt")).flavor == "small"


def test_a_flavor_refuses_a_trainer_field_that_does_not_exist():
    with pytest.raises(TypeError, match="max_step$"):
        Flavor(model={}, train=dict(max_step=10))
    with pytest.raises(TypeError, match="options$"):
        Flavor(model={}, train=dict(options=dict(folds=2)))  # options go in Flavor.options


def test_every_flavor_is_a_flavor_whose_options_the_model_has():
    for name in TASKS:
        task_cls = get_task(name)
        assert "debug" in task_cls.flavors and task_cls.default_flavor in task_cls.flavors
        for flavor, preset in task_cls.flavors.items():
            assert isinstance(preset, Flavor), (name, flavor)
            assert set(preset.options) <= set(field_types(task_cls.Options)), (name, flavor)


def test_flavor_options_beat_the_options_defaults():
    assert GPTOptions().position == "learned"
    assert resolve_config(TrainConfig(model="gpt", flavor="speedrun")).options["position"] == "rotary"
    cfg = resolve_config(TrainConfig(model="gpt", flavor="speedrun", options={"position": "learned"}))
    assert cfg.options["position"] == "learned"


def test_tasks_read_their_flavors_fixed_settings():
    """What a flavor fixes for the task alone (not options) reaches the task: NPT's objective, BERT's vocabulary."""
    npt = NPTTask(resolve_config(TrainConfig(model="npt", flavor="paper", data="iris")))
    assert npt.objective == dict(feature_mask=0.15, target_mask=0.1, target_weight=0.5)
    assert BERTTask(resolve_config(TrainConfig(model="bert", flavor="debug-nsp"))).flavor.model["vocab_size"] == 400
    with pytest.raises(UserError, match="flavor 'lookup' is the semi-synthetic lookup experiment"):
        NPTTask(resolve_config(TrainConfig(model="npt", flavor="lookup", data="iris")))
