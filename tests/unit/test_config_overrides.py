"""--set overrides, the data source shapes of a training config, and optimizer options."""

from __future__ import annotations

import pytest
import yaml

from tuneforge.config import TrainConfig, load_config, validate_config
from tuneforge.config.data import DataSource, EvalSplit
from tuneforge.config.overrides import apply_overrides
from tuneforge.errors import ConfigError, MissingDependencyError
from tuneforge.training.arguments import optimizer_argument

BASE = {"model": "m", "method": "lora", "data": {"train": "a.jsonl"}}


def test_overrides_parse_yaml_scalars_and_expand_shorthands():
    raw = apply_overrides(BASE, ["train.learning_rate=1.0e-4", "method.r=32", "train.gradient_checkpointing=true",
                                 "data.system_prompt=null", "data.train.0.weight=0.7",
                                 "data.train.1={path: b.jsonl, weight: 0.3}", "data.eval={split: 0.1}"])
    assert BASE == {"model": "m", "method": "lora", "data": {"train": "a.jsonl"}}  # the input is not changed
    config = validate_config(raw, TrainConfig)
    assert config.method.name == "lora" and config.method.r == 32
    assert config.train.learning_rate == 1e-4 and config.train.gradient_checkpointing is True
    assert [(s.path, s.weight) for s in config.data.train_sources()] == [("a.jsonl", 0.7), ("b.jsonl", 0.3)]
    assert config.data.eval_split == 0.1 and config.data.eval_sources() == []


@pytest.mark.parametrize(
    ("argument", "needles"),
    [
        ("train.learning_rate=-1", ["--set train.learning_rate=-1", "field 'train.learning_rate'", "greater than 0"]),
        ("train.learnig_rate=1", ["--set train.learnig_rate=1", "did you mean 'learning_rate'"]),
        ("method.r=many", ["--set method.r=many", "field 'method.r'", "'many'"]),
        ("learning_rate", ["--set learning_rate", "KEY=VALUE"]),
        ("data.train.5.weight=1", ["--set data.train.5.weight=1", "'5' is not a key or position"]),
        ("seed.x=1", ["--set seed.x=1", "cannot set 'x'"]),
    ],
)
def test_override_errors_name_the_argument(tmp_path, argument, needles):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "seed": 3}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides=[argument])
    text = str(caught.value)
    for needle in needles:
        assert needle in text, text
    assert str(path) not in text  # the fault is on the command line, not in the file


def test_file_errors_still_name_the_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "train": {"epochs": -1}}))
    with pytest.raises(ConfigError, match=r"c\.yaml, line \d+, field 'train\.epochs'"):
        load_config(path, overrides=["method.r=8"])


def test_data_sources_shapes_and_rules():
    data = validate_config({**BASE, "data": {"train": {"dataset": "support:3", "since": 2, "replay": 0.2},
                                             "eval": "e.jsonl"}}, TrainConfig).data
    assert data.train == [DataSource(dataset="support:3", since=2, replay=0.2)]
    assert [s.path for s in data.eval_sources()] == ["e.jsonl"] and data.eval_split is None
    assert isinstance(validate_config({**BASE, "data": {"train": "a", "eval": {"split": 0.05}}}, TrainConfig).data.eval,
                      EvalSplit)
    bad = [
        ({"train": [{"path": "a", "weight": 1}, {"path": "b"}]}, "weight to every"),
        ({"train": [{"weight": 1}]}, "give 'path'"),
        ({"train": [{"path": "a", "wieght": 1}]}, "did you mean 'weight'"),
        ({"train": [{"path": "a", "since": 2}]}, "'dataset' entry only"),
        ({"train": [{"dataset": "s:1", "replay": 0.1}]}, "'replay' needs 'since'"),
        ({"train": "a", "eval": [{"path": "b", "weight": 2}]}, "data.train only"),
        ({"train": "a", "eval": {"split": 0.7}}, "less than 0.5"),
        ({"train": "a", "chat_template": "chatlm"}, "did you mean 'chatml'"),
        ({"train": "a", "overlong": "skip"}, "truncate"),
    ]
    for data_block, needle in bad:
        with pytest.raises(ConfigError, match=needle):
            validate_config({**BASE, "data": data_block}, TrainConfig)


def test_split_counts_as_eval_data_for_early_stopping():
    config = {**BASE, "data": {"train": "a", "eval": {"split": 0.1}}, "train": {"early_stopping_patience": 2}}
    assert validate_config(config, TrainConfig).train.early_stopping_patience == 2


def test_optimizer_maps_to_training_arguments(monkeypatch):
    assert optimizer_argument("auto") == {}
    assert optimizer_argument("adafactor") == {"optim": "adafactor"}
    assert optimizer_argument("lion") == {"optim": "lion_32bit"}
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="bitsandbytes"):
        optimizer_argument("paged_adamw_8bit")


def test_training_arguments_take_optimizer_neftune_and_label_smoothing(tmp_path):
    from transformers import TrainingArguments

    from tuneforge.storage.rundir import RunDir
    from tuneforge.training.arguments import training_arguments
    from tuneforge.training.precision import resolve_precision

    config = validate_config({**BASE, "train": {"optimizer": "sgd", "neftune_alpha": 5, "label_smoothing": 0.1,
                                                "precision": "fp32"}}, TrainConfig)
    args = TrainingArguments(**training_arguments(config, resolve_precision("fp32"), RunDir(tmp_path), has_eval=False))
    assert (args.optim, args.neftune_noise_alpha, args.label_smoothing_factor) == ("sgd", 5.0, 0.1)
    with pytest.raises(ConfigError, match="loraplus"):
        validate_config({**BASE, "method": {"name": "lora", "loraplus_lr_ratio": 16}, "train": {"optimizer": "sgd"}},
                        TrainConfig)
