"""Config validation: the minimal config works; bad configs name file, line, field and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.config import method_names
from tuneforge.errors import ConfigError, NotFoundError
from tuneforge.services.training import template

MINIMAL = """\
model: smollm2-135m
method: lora            # lora | qlora | dora | full | freeze
data:
  train: data/train.jsonl
  eval: data/eval.jsonl
train:
  epochs: 3
  learning_rate: 2.0e-4
  batch_size: 8
seed: 42
output_dir: runs/demo
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_minimal_config_from_the_issue_validates_with_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.method.name == "lora" and config.method.r == 16 and config.method.target_modules == "auto"
    assert config.train.epochs == 3 and config.train.precision == "auto"
    assert config.data.eval == "data/eval.jsonl" and config.output_dir == "runs/demo"


def test_method_mapping_carries_its_options(tmp_path):
    text = MINIMAL.replace("method: lora ", "method: {name: qlora, r: 8, bits: 4, quant_type: fp4}\n#")
    config = load_config(write(tmp_path, text))
    assert (config.method.name, config.method.r, config.method.quant_type) == ("qlora", 8, "fp4")


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "hint"),
    [
        ("  epochs: 3", "  epoch: 3", 7, "train.epoch", "did you mean 'epochs'?"),
        ("  batch_size: 8", "  batch_size: eight", 9, "train.batch_size", None),
        ("method: lora ", "method: lorra ", 2, "method", "did you mean 'lora'?"),
        ("  train: data/train.jsonl\n", "", 3, "data.train", "add 'train:' to the config"),
        ("seed: 42", "sed: 42", 10, "sed", "did you mean 'seed'?"),
    ],
)
def test_bad_config_names_line_field_and_hint(tmp_path, old, new, line, field, hint):
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    err = caught.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    if hint:
        assert err.hint == hint
    assert str(path) in str(err) and f"line {line}" in str(err)


def test_unknown_key_inside_method_block_is_found(tmp_path):
    text = MINIMAL.replace("method: lora ", "method:\n  name: lora\n  alpah: 3\n#")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.field == "method.alpah" and caught.value.line == 4 and "alpha" in caught.value.hint


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("method: {name: qlora, bits: 8, quant_type: nf4}", "bits: 4 only"),
        ("method: {name: freeze, trainable_layers: null}", "nothing would train"),
        ("method: {name: lora, r: 0}", "greater than or equal to 1"),
        ("method: {name: lora, target_parameters: [experts.down_proj]}", "without dropout: set method.dropout: 0"),
    ],
)
def test_impossible_combinations_are_errors(tmp_path, patch, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL.replace("method: lora ", patch + "\n#")))


def test_early_stopping_needs_eval_data(tmp_path):
    text = MINIMAL.replace("  eval: data/eval.jsonl\n", "").replace("  batch_size: 8", "  batch_size: 8\n  early_stopping_patience: 2")
    with pytest.raises(ConfigError, match="needs data.eval"):
        load_config(write(tmp_path, text))


def test_missing_file_and_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "model: x\ndata: [unclosed\n"))
    assert caught.value.line is not None and "not valid YAML" in caught.value.message


@pytest.mark.parametrize("name", method_names())
def test_every_template_validates(tmp_path, name):
    config = load_config(write(tmp_path, template(name)))
    assert config.method.name == name


def test_every_example_config_validates():
    examples = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert examples
    for path in examples:
        load_config(path)


def test_unknown_template_is_not_found():
    with pytest.raises(NotFoundError, match="no template named 'lorax'"):
        template("lorax")
