import pytest

from grpolab.core.registry import UnknownNameError
from grpolab.trainer.config import (
    CHOICES,
    FIELDS,
    TrainConfig,
    check_choices,
    check_ints,
    load_options,
    parse_value,
    resolve,
)


def test_defaults_give_the_default_run():
    config = resolve(None, {})
    assert (config.model, config.task, config.algo) == ("tiny-arith", "arith", "grpo")
    assert config.name.startswith("grpo-arith-")
    assert config.preset().name == "grpo"


def test_precedence_defaults_preset_file_cli(tmp_path):
    assert resolve(None, {"algo": "remax"}).num_generations == 1  # the preset's method setting
    assert resolve(None, {"algo": "ppo"}).num_iterations == 4
    file = tmp_path / "run.yaml"
    file.write_text("algo: remax\nnum_generations: 3\nlearning_rate: 0.001\n")
    config = resolve(file, {"learning_rate": 0.01})
    assert (config.num_generations, config.learning_rate) == (3, 0.01)  # file beats preset, CLI beats file


def test_part_overrides_merge_hyper_parameters():
    preset = resolve(None, {"loss": "clip_higher", "loss_args": {"epsilon_high": 0.3}}).preset()
    assert preset.loss.name == "clip_higher" and dict(preset.loss.params) == {"epsilon_high": 0.3}
    preset = resolve(None, {"loss_args": {"epsilon": 0.1}}).preset()  # same part: merged over the preset's
    assert dict(preset.loss.params) == {"epsilon": 0.1}
    preset = resolve(None, {"regularizers": [{"name": "kl", "params": {"coef": 0.01}}, "entropy"]}).preset()
    assert [str(p) for p in preset.regularizers] == ["kl(coef=0.01)", "entropy"]
    assert resolve(None, {"advantage": "rloo", "aggregation": "token_mean"}).preset().aggregation == "token_mean"


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"algo": "grpoo"}, UnknownNameError, "unknown preset 'grpoo'"),
        ({"stepz": 3}, ValueError, r"unknown options \['stepz'\]"),
        ({"loss": "ppo"}, UnknownNameError, "unknown policy loss 'ppo'"),
        ({"loss_args": {"eps": 0.2}}, ValueError, r"unknown arguments \['eps'\]"),
        ({"aggregation": "mean"}, UnknownNameError, "unknown aggregation"),
        ({"regularizers": [{"nam": "kl"}]}, ValueError, "each entry is a name"),
        ({"steps": 0}, ValueError, "--steps must be a positive integer"),
        ({"save_every": True}, ValueError, "--save-every must be an integer >= 0"),
        ({"num_generations": 2.5}, ValueError, "--num-generations"),
        ({"learning_rate": -1.0}, ValueError, "--learning-rate must be > 0"),
        ({"top_p": 1.5}, ValueError, "--top-p"),
        ({"dtype": "fp16"}, ValueError, "--dtype must be one of"),
        ({"on_reward_error": "ignore"}, ValueError, "--on-reward-error"),
        ({"num_prompts": 1, "num_generations": 2, "minibatches": 3}, ValueError, "cannot be split"),
    ],
)
def test_invalid_configurations_fail_before_any_work(overrides, error, message):
    with pytest.raises(error, match=message):
        resolve(None, overrides)


def test_load_options_reads_the_file_then_the_overrides_and_rejects_unknown_names(tmp_path):
    # the part grpolab train's resolve and grpolab sft's resolve_sft share
    file = tmp_path / "run.yaml"
    file.write_text("steps: 5\nseed: 3\n")
    assert load_options(file, {"steps": 7}, FIELDS) == {"steps": 7, "seed": 3}
    assert load_options(None, None, FIELDS) == {}
    file.write_text("- steps\n")
    with pytest.raises(ValueError, match="a mapping of option: value"):
        load_options(file, {}, FIELDS)
    with pytest.raises(ValueError, match=r"unknown options \['bogus'\]"):
        load_options(None, {"bogus": 1}, {"steps": None})


def test_shared_checks_name_the_flag():
    config = TrainConfig(steps=0, eval_every=-1, max_new_tokens=None, lr_schedule="step")
    with pytest.raises(ValueError, match="--steps must be a positive integer, got 0"):
        check_ints(config, ["steps"])
    with pytest.raises(ValueError, match="--eval-every must be an integer >= 0, got -1"):
        check_ints(config, ["eval_every"], minimum=0)
    check_ints(config, ["max_new_tokens"], optional=True)  # None: decided later (the task's suggestion)
    with pytest.raises(ValueError, match="--max-new-tokens must be a positive integer, got None"):
        check_ints(config, ["max_new_tokens"])
    with pytest.raises(ValueError, match="--seed must be a positive integer, got True"):
        check_ints(TrainConfig(seed=True), ["seed"])  # a bool is not an integer here
    with pytest.raises(ValueError, match=r"--lr-schedule must be one of \['constant', 'linear', 'cosine'\]"):
        check_choices(config, {"lr_schedule": CHOICES["lr_schedule"]})


def test_parse_value_uses_yaml_and_field_types():
    assert parse_value("steps", "20") == 20
    assert parse_value("learning_rate", "5e-4") == 5e-4  # YAML 1.1 alone would read a string
    with pytest.raises(ValueError, match="--steps takes a number"):
        parse_value("steps", "many")
    assert parse_value("loss_args", "{epsilon: 0.1}") == {"epsilon": 0.1}
    assert parse_value("stop", '["\\n", "."]') == ["\n", "."]
    assert parse_value("name", "123") == "123"
    assert parse_value("lora", "true") is True
    with pytest.raises(ValueError, match="unknown option --bogus"):
        parse_value("bogus", "1")


def test_every_option_is_documented():
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert len(f.metadata.get("help", "")) > 10, f.name
