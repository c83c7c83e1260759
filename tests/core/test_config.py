"""Configuration precedence and the bad-input classes, through the resolver."""

from __future__ import annotations

import pytest
from dssl.config import RunConfig, deep_merge, parse_set, resolve_config
from dssl.errors import ConfigError, UnknownComponentError


def test_precedence_defaults_preset_file_cli_set(tmp_path):
    defaults = RunConfig()
    preset_only = resolve_config(check_components=False, base={"preset": "cpu"})
    assert preset_only.optim.min_lr == defaults.optim.min_lr  # not in the preset: default kept
    config_file = tmp_path / "run.yaml"
    config_file.write_text("optim:\n  steps: 5\n  lr: 0.002\n  batch_size: 4\nseed: 3\n")
    resolved = resolve_config(
        config_file=config_file,
        cli={"optim.steps": 7, "optim.batch_size": 6},
        sets=["optim.steps=9"],
        check_components=False,
    )
    assert resolved.optim.steps == 9  # --set beats CLI beats file
    assert resolved.optim.batch_size == 6  # CLI beats file
    assert resolved.optim.lr == 0.002  # file beats defaults
    assert resolved.seed == 3


def test_preset_sits_between_defaults_and_user_layers(tmp_path):
    from dssl.catalogue import load_catalogue

    cpu = load_catalogue().preset_layer("cpu", "dino")
    resolved = resolve_config(base={"preset": "cpu"}, check_components=False)
    assert resolved.optim.steps == cpu["optim"]["steps"]
    resolved = resolve_config(base={"preset": "cpu"}, cli={"optim.steps": 3}, check_components=False)
    assert resolved.optim.steps == 3


def test_set_values_are_typed_yaml():
    assert parse_set("optim.lr=1e-3") == {"optim": {"lr": 1e-3}}
    assert parse_set("evaluators=[linear_seg]") == {"evaluators": ["linear_seg"]}
    assert parse_set("optim.clip_grad=null") == {"optim": {"clip_grad": None}}


def test_deep_merge_replaces_lists_and_merges_mappings():
    assert deep_merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2]}}) == {"a": {"b": 1, "c": [2]}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sets": ["optim.lrr=1"]}, r"unknown key 'optim.lrr' \(accepted: steps, batch_size, lr"),
        ({"sets": ["optim.steps=abc"]}, r"optim.steps: Input should be a valid integer"),
        ({"sets": ["optim.lr=-1"]}, r"optim.lr: Input should be greater than 0 \(got -1\)"),
        ({"sets": ["device=tpu"]}, r"device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"sets": ["optim.lr"]}, r"expected key.path=value"),
        ({"config_file": "/nonexistent/run.yaml"}, r"config file /nonexistent/run.yaml not found"),
    ],
)
def test_bad_input_gives_one_clear_message(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(check_components=False, **kwargs)


def test_malformed_and_non_mapping_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {steps: 3\n")
    with pytest.raises(ConfigError, match=r"not valid YAML: .*line"):
        resolve_config(config_file=bad, check_components=False)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must contain a mapping"):
        resolve_config(config_file=listy, check_components=False)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(config_file=evil, check_components=False)


def test_unknown_component_and_component_options_are_checked():
    with pytest.raises(UnknownComponentError, match="did you mean 'dino'"):
        resolve_config(cli={"objective.name": "dnio"})
    with pytest.raises(ConfigError, match=r"unknown key 'objective.options.no_such_option'"):
        resolve_config(sets=["objective.options.no_such_option=1"])
    with pytest.raises(UnknownComponentError, match="unknown evaluator 'linear_sge'"):
        resolve_config(cli={"evaluators": ["linear_sge"]})


def test_component_options_are_filled_with_their_defaults():
    resolved = resolve_config(cli={"objective.name": "dino"})
    assert resolved.augmentation.name == "multicrop"  # the objective's default augmentation
    assert "student_temp" in resolved.objective.options
    assert set(resolved.evaluator_options) == set(resolved.evaluators)


def test_fingerprint_ignores_where_results_are_logged():
    a = resolve_config(check_components=False, base={"tracking": {"experiment": "x"}})
    b = resolve_config(check_components=False, base={"tracking": {"experiment": "y"}})
    c = resolve_config(check_components=False, base={"seed": 1})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_eval_dataset_defaults_to_the_training_dataset_and_is_validated():
    assert RunConfig().eval_dataset is None  # the model default; the cpu preset sets a smaller probe set
    resolved = resolve_config(sets=["eval_dataset.name=embedded", "eval_dataset.options.size=64"])
    assert resolved.eval_dataset.options["size"] == 64 and "num_val" in resolved.eval_dataset.options
    with pytest.raises(ConfigError, match=r"eval_dataset\.options\.size"):
        resolve_config(sets=["eval_dataset.name=embedded", "eval_dataset.options.size=7"])


def test_preset_settings_of_evaluators_not_run_are_dropped_but_the_users_still_fail():
    # The gpu preset tunes STELLAR's knn and linear_cls; a run of linear_seg only must not trip over them.
    config = resolve_config(cli={"objective.name": "stellar", "preset": "gpu", "evaluators": ["linear_seg"]})
    assert set(config.evaluator_options) == {"linear_seg"}
    with pytest.raises(ConfigError, match="evaluators not selected: knn"):
        resolve_config(cli={"evaluators": ["linear_seg"]}, sets=["evaluator_options.knn.k=[5]"])


def test_another_training_dataset_is_also_the_evaluation_dataset():
    # The cpu preset evaluates on its own embedded probe set (num_train 512); that set is the preset's
    # evaluation of *embedded*, so another training dataset is evaluated on itself.
    default = resolve_config()
    assert default.eval_dataset is not None and default.eval_dataset.name == "embedded"
    moved = resolve_config(cli={"dataset.name": "image_mask_folder"}, sets=["dataset.options.num_classes=3"])
    assert moved.eval_dataset is None and moved.dataset.name == "image_mask_folder"
    assert "num_train" not in moved.dataset.options  # the preset's embedded options never reach another dataset


def test_eval_dataset_flag_wins_and_gets_the_preset_options_only_for_its_own_dataset():
    other = resolve_config(cli={"eval_dataset.name": "embedded_natural"})
    assert other.eval_dataset.name == "embedded_natural"
    assert other.eval_dataset.options["num_train"] != 512  # the preset's embedded probe size did not leak
    same = resolve_config(cli={"dataset.name": "embedded_natural", "eval_dataset.name": "embedded"})
    assert (same.eval_dataset.name, same.eval_dataset.options["num_train"]) == ("embedded", 512)
    # Evaluation options without a name are for the training dataset the user chose.
    options_only = resolve_config(cli={"dataset.name": "embedded_natural"}, sets=["eval_dataset.options.num_val=10"])
    assert (options_only.eval_dataset.name, options_only.eval_dataset.options["num_val"]) == ("embedded_natural", 10)


def test_preset_training_dataset_options_stay_with_the_preset_dataset():
    from dssl.config import preset_datasets_for

    preset = {"dataset": {"name": "imagefolder", "options": {"size": 224}}, "eval_dataset": {"name": "voc2012"}}
    assert preset_datasets_for(preset, {}) == preset
    assert preset_datasets_for(preset, {"dataset": {"name": "imagefolder"}}) == preset
    assert preset_datasets_for(preset, {"dataset": {"name": "coco_things"}}) == {"dataset": {}}
    kept = preset_datasets_for(preset, {"dataset": {"name": "coco_things"}, "eval_dataset": {"name": "voc2012"}})
    assert kept == {"dataset": {}, "eval_dataset": {"name": "voc2012"}}
