"""Config loading: merge order, presets and the errors for bad input."""

import pytest

from daydream.config import ConfigError, config_from_dict, load_config


def test_defaults_and_task_and_overrides_merge_in_order(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("size: tiny\nmodel: {deter: 96}\ntrain: {steps: 10}\n")
    config = load_config(task, ["train.steps=20"])
    assert config.model.deter == 96          # task config beats the size preset
    assert config.model.units == 64          # preset value where the task is silent
    assert config.train.steps == 20          # --set beats the task config
    assert config.replay.batch_length == 64  # default


def test_every_task_config_loads():
    from daydream.config import config_dir

    names = [p.stem for p in config_dir().glob("*.yaml") if p.stem != "defaults"]
    assert {"dmc_walker_walk", "dmc_cartpole_swingup", "carracing"} <= set(names)
    for name in names:
        load_config(name)


@pytest.mark.parametrize("override, message", [
    ("model.detr=3", r"unknown config key 'model.detr'.*did you mean 'model.deter'"),
    ("model.deter=abc", r"'model.deter' must be an integer"),
    ("train.progress=yes please", r"'train.progress' must be true or false"),
    ("model.latent=poisson", r"choose one of: categorical, gaussian"),
    ("size=huge", r"size 'huge' is not a preset"),
    ("env.size=[64]", r"'env.size' must be a list of 2 values"),
    ("model=3", r"'model' .*is a section"),
    ("nonsense", r"must look like key.sub=value"),
])
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_key_in_a_file_is_reported(tmp_path):
    task = tmp_path / "bad.yaml"
    task.write_text("replay:\n  capacty: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'replay.capacty'.*capacity"):
        load_config(task)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found; known task configs"):
        load_config("no_such_task")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_scientific_notation_without_dot_is_a_number():
    assert load_config(None, ["model.lr=3e-4"]).model.lr == pytest.approx(3e-4)


def test_roundtrip_through_dict():
    config = load_config(None, ["size=tiny"])
    again = config_from_dict(config.to_dict(), ["train.steps=5"])
    assert again.model == config.model and again.train.steps == 5
    assert config.digest("model") == again.digest("model")


def test_a_config_saved_before_a_knob_existed_loads_with_the_knobs_default():
    """Checkpoints store their resolved config; one saved before a knob was added must still load
    (the knob takes its default, the behaviour the run had), and unknown keys are still errors."""
    saved = load_config("a1_roll_cpu").to_dict()
    del saved["train"]["eval_mode"], saved["robot"]["reset_each_episode"], saved["agent"]
    config = config_from_dict(saved, ["device=cpu"])
    assert config.train.eval_mode == "eval" and config.robot.reset_each_episode is False
    assert config.agent == load_config(None).agent and config.train.steps == 20000  # the saved values stay
    saved["train"]["no_such_knob"] = 1
    with pytest.raises(ConfigError, match="no_such_knob"):
        config_from_dict(saved)
