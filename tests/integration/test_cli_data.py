"""Data options end to end on a tiny model: --set, weighted sources, an eval split, ShareGPT, a chosen chat
template saved with the adapter, overlong records, optimizer options, and platform dataset references."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from fixtures.data import MEMORIZE, write_jsonl
from test_cli import tuneforge

from tuneforge.data.templates import NAMED_TEMPLATES
from tuneforge.errors import ConfigError


def _sharegpt(rows: list[dict]) -> list[dict]:
    speaker = {"user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": speaker[m["role"]], "value": m["content"]} for m in row["messages"]]}
            for row in rows]


def test_train_with_sources_template_overlong_and_set(tiny_model, tmp_path, settings, caplog):
    chats = write_jsonl(tmp_path / "chats.jsonl", MEMORIZE)
    long_row = {"messages": [{"role": "user", "content": "The quick brown fox " * 40},
                             {"role": "assistant", "content": "ok"}]}
    shared = write_jsonl(tmp_path / "shared.jsonl", _sharegpt(MEMORIZE[:4]) + _sharegpt([long_row]))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model), "method": "lora", "output_dir": str(tmp_path / "run"),
        "data": {"train": [{"path": str(chats), "weight": 0.7}, {"path": str(shared), "weight": 0.3}],
                 "eval": str(chats), "chat_template": "llama3", "overlong": "drop"},
        "train": {"max_steps": 3, "batch_size": 4, "precision": "fp32", "max_seq_length": 160, "logging_steps": 1},
    }))
    result = tuneforge("train", config, "--set", "train.learning_rate=5.0e-3", "--set", "method.r=4",
                       "--set", "train.optimizer=sgd", "--set", "train.neftune_alpha=5",
                       "--set", "train.label_smoothing=0.1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(messages+sharegpt)" in out
    assert "source " in out and "chats.jsonl: 8 records, weight 0.7" in out, out
    assert "1 record(s) longer than max_seq_length 160 tokens, dropped (data.overlong: drop)" in out
    assert "shared.jsonl line 5" in out  # once, even when mixing draws it twice
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["learning_rate"] == 5e-3 and saved["method"]["r"] == 4
    assert saved["train"]["optimizer"] == "sgd" and saved["data"]["chat_template"] == "llama3"
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path / "run" / "adapter").chat_template == NAMED_TEMPLATES["llama3"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["eval_loss"] is not None and len(summary["dataset"]["sources"]) == 2
    assert summary["dataset"]["overlong"] == 1 and summary["dataset"]["overlong_policy"] == "drop"
    assert "`llama3`" in (tmp_path / "run" / "README.md").read_text()
    from tuneforge.models.inference import load_for_inference

    with caplog.at_level(logging.WARNING, logger="tuneforge.models"):
        _, tokenizer, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    assert tokenizer.chat_template == NAMED_TEMPLATES["llama3"]  # generate and eval prompt as training did
    assert "trained with a chat template that differs from its base model's" in caplog.text

    bad = tuneforge("config", "validate", config, "--set", "train.learning_rate=-1")
    assert bad.returncode == 1 and "--set train.learning_rate=-1" in bad.stderr and "hint:" in bad.stderr
    good = tuneforge("config", "validate", config, "--set", "seed=5")
    assert good.returncode == 0 and '"seed": 5' in good.stdout


def test_dataset_references_resolve_through_the_resolver(tiny_model, tmp_path, settings, caplog):
    from tuneforge.services.training import train

    data = write_jsonl(tmp_path / "support-3.jsonl", MEMORIZE)
    calls = []

    def resolver(ref, *, since, replay, seed):
        calls.append((ref, since, replay, seed))
        return data

    config = {"model": str(tiny_model), "method": {"name": "lora", "r": 4},
              "data": {"train": [{"dataset": "support:3", "since": 2, "replay": 0.2}], "eval": {"split": 0.25}},
              "train": {"max_steps": 2, "batch_size": 4, "precision": "fp32"}, "seed": 11,
              "output_dir": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match=r"dataset references need the platform's dataset registry"):
        train(config, settings=settings)
    result = train(config, settings=settings, resolve_dataset=resolver)
    assert calls == [("support:3", 2, 0.2, 11)]
    assert result.summary["dataset"]["examples"] == len(MEMORIZE) - 2 and result.summary["eval_loss"] is not None
    assert result.summary["dataset"]["sources"] == [
        {"source": "support:3", "records": 8, "held_out": 2, "weight": None, "drawn": 6}]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["train"][0]
    assert saved["dataset"] == "support:3" and saved["path"] == str(data)
    from tuneforge.models.inference import load_for_inference

    with caplog.at_level(logging.WARNING, logger="tuneforge.models"):
        load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    assert "chat template" not in caplog.text  # trained with the model's own template: nothing to warn about


def test_cli_train_reads_a_versioned_dataset_of_the_project(tiny_model, tmp_path):
    env = {"TUNEFORGE_HOME": str(tmp_path / "home"), "TUNEFORGE_PROJECT": "team"}
    first = write_jsonl(tmp_path / "v1.jsonl", MEMORIZE[:6])
    more = write_jsonl(tmp_path / "more.jsonl", MEMORIZE[6:])
    assert tuneforge("data", "import", first, "--name", "support", extra_env=env).returncode == 0
    assert tuneforge("data", "append", "support", more, extra_env=env).returncode == 0
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_model), "method": "lora", "output_dir": str(tmp_path / "run"), "seed": 3,
        "data": {"train": [{"dataset": "support@latest", "since": 1, "replay": 0.5}]},
        "train": {"max_steps": 1, "batch_size": 4, "precision": "fp32"},
    }))
    done = tuneforge("train", config, extra_env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"]["examples"] == len(MEMORIZE[6:]) + 3  # the records added in v2, half of v1's six
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["train"][0]
    assert saved["dataset"] == "support@latest" and saved["path"].endswith(".jsonl")
    other = tuneforge("train", config, "--overwrite", extra_env={**env, "TUNEFORGE_PROJECT": "elsewhere"})
    assert other.returncode == 1 and "support" in other.stderr  # another project's data sets are not visible
