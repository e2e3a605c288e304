"""OpenAI requests into TrainConfigs ("auto" hyperparameters) and OpenAI's training-file checks."""

from __future__ import annotations

import json

import pytest

from tuneforge.config import TrainConfig
from tuneforge.api.openai.protocol import Hyperparameters, OpenAIJobRequest, resolve_hyperparameters, to_train_config
from tuneforge.api.openai.file_checks import TrainingFileError, check_jsonl, check_training_file


@pytest.mark.parametrize("examples, epochs, batch", [(10, 10, 1), (20, 5, 1), (1000, 3, 2), (20_000, 1, 32)])
def test_auto_hyperparameters_follow_the_size_of_the_file(examples, epochs, batch):
    resolved = resolve_hyperparameters(Hyperparameters(), examples=examples, method_type="supervised")
    assert resolved == {"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": 1.0}
    assert resolve_hyperparameters(Hyperparameters(beta=0.3), examples=50, method_type="dpo")["beta"] == 0.3


def test_an_openai_request_becomes_a_train_config():
    request = OpenAIJobRequest.model_validate({
        "model": "tiny", "training_file": "file-1", "suffix": "x",
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 0.5}}},
        "tuneforge": {"method": {"name": "dora", "r": 4}, "train": {"max_seq_length": 256}},
    })
    hyper = resolve_hyperparameters(request.chosen_hyperparameters(), examples=100, method_type=request.method_type)
    raw = to_train_config(request, model_path="/m", training_path="/d/train.jsonl", validation_path=None,
                          hyperparameters=hyper, seed=3, output_dir="/runs/j")
    config = TrainConfig.model_validate(raw)
    assert config.task.name == "dpo" and config.task.beta == 0.1 and config.method.name == "dora" and config.method.r == 4
    assert config.train.epochs == 2 and config.train.learning_rate == pytest.approx(1e-4)
    assert config.train.max_seq_length == 256 and config.seed == 3 and config.data.train == "/d/train.jsonl"
    with pytest.raises(ValueError):
        OpenAIJobRequest.model_validate({"model": "m", "training_file": "f", "hyperparamters": {}})


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_training_file_checks_name_the_example_and_the_code(tmp_path):
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    pair = {"input": {"messages": [{"role": "user", "content": "hi"}]},
            "preferred_output": [{"role": "assistant", "content": "hello"}],
            "non_preferred_output": [{"role": "assistant", "content": "go away"}]}
    assert check_training_file(write(tmp_path / "ok.jsonl", [chat] * 10)).examples == 10
    assert check_training_file(write(tmp_path / "dpo.jsonl", [pair] * 10), method="dpo").format == "preference"
    with pytest.raises(TrainingFileError) as caught:
        check_training_file(write(tmp_path / "chat-for-dpo.jsonl", [chat] * 10), method="dpo")
    assert caught.value.code == "invalid_training_file" and "Example 1" in caught.value.message
    with pytest.raises(TrainingFileError) as caught:
        check_jsonl(write(tmp_path / "bad.jsonl", [chat, "[1, 2]"]))
    assert caught.value.code == "invalid_training_file" and caught.value.line == 2
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(TrainingFileError, match="not UTF-8"):
        check_jsonl(tmp_path / "latin1.jsonl")


def test_keys_create_prints_a_key_once_and_stores_its_hash(tmp_path):
    from typer.testing import CliRunner

    from tuneforge.cli.app import app
    from tuneforge.errors import AuthenticationError
    from tuneforge.settings import Settings
    from tuneforge.services.platform import authenticate, open_platform

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    result = CliRunner().invoke(app, ["keys", "create", "--project", "acme", "--database-url", url])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    platform = open_platform(Settings(database_url=url, home=str(tmp_path)))
    assert authenticate(platform, f"Bearer {key}") == "acme"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keys.db*"))  # the database and its WAL
    assert key.encode() not in stored  # only the hash is stored
    with pytest.raises(AuthenticationError):
        authenticate(platform, "Bearer tf-not-a-key")
    platform.close()
