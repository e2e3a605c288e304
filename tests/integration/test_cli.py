"""The real CLI in subprocesses: bad input gets 'error:' and 'hint:' lines, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tuneforge.storage.rundir import RunDir

CLI = [sys.executable, "-m", "tuneforge.cli.app"]


def tuneforge(*args: str, cwd: Path | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def write_config(path: Path, model: Path, data: Path, out: Path, **overrides) -> Path:
    config = {
        "model": str(model), "method": "lora", "data": {"train": str(data)},
        "train": {"epochs": 2, "learning_rate": 1e-2, "batch_size": 4, "precision": "fp32"},
        "output_dir": str(out),
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    path.write_text(yaml.safe_dump(config))
    return path


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "error:" in result.stderr and "hint:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_train_prints_progress_and_summary(tiny_model, memorize_data, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run")
    result = tuneforge("train", config)
    assert result.returncode == 0, result.stderr
    assert "data: 8 examples (messages)" in result.stdout and "run summary" in result.stdout
    assert "tok/s" in result.stdout and "train" in result.stdout
    listed = tuneforge("generate", tmp_path / "run", "--prompt", "What is 1 plus 2?", "--max-new-tokens", "4")
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        ("missing_config", ["config file not found"]),
        ("typo", ["line {typo_line}", "field 'train.learning_rat'", "did you mean 'learning_rate'"]),
        ("bad_line", ["bad.jsonl, line 9", "messages[0].role is 'bot'"]),
        ("missing_data", ["data file not found"]),
        ("model_offline", ["not in the local Hugging Face cache", "hf download"]),
        ("missing_model_dir", ["not found"]),
    ],
)
def test_bad_input_gets_a_clear_error(tiny_model, memorize_data, tmp_path, setup, needles):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run")
    if setup == "missing_config":
        config = tmp_path / "absent.yaml"
    elif setup == "typo":
        config.write_text(config.read_text().replace("learning_rate", "learning_rat"))
    elif setup == "bad_line":
        bad = tmp_path / "bad.jsonl"
        bad.write_text(memorize_data.read_text() + '{"messages": [{"role": "bot", "content": "x"}]}\n')
        write_config(config, tiny_model, bad, tmp_path / "run")
    elif setup == "missing_data":
        write_config(config, tiny_model, tmp_path / "nope.jsonl", tmp_path / "run")
    elif setup == "model_offline":
        write_config(config, "someone/not-a-cached-model", memorize_data, tmp_path / "run")
    elif setup == "missing_model_dir":
        write_config(config, tmp_path / "no-model-here", memorize_data, tmp_path / "run")
    typo_line = next((i for i, l in enumerate(config.read_text().splitlines(), 1) if "learning_rat:" in l), 0) \
        if config.exists() else 0
    assert_clean_error(tuneforge("train", config), *(n.format(typo_line=typo_line) for n in needles))
    assert not (tmp_path / "run" / "summary.json").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = tuneforge("--debug", "train", tmp_path / "absent.yaml")
    assert result.returncode != 0 and "Traceback" in (result.stdout + result.stderr)


def test_qlora_without_bitsandbytes_names_the_extra(tiny_model, memorize_data, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run", method="qlora")
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bitsandbytes': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    result = tuneforge("train", config, extra_env={"PYTHONPATH": str(blocker)})
    assert_clean_error(result, "bitsandbytes", "tuneforge[qlora]")


def test_config_validate_and_template(tmp_path, tiny_model, memorize_data):
    template = tuneforge("config", "template", "qlora")
    assert template.returncode == 0 and "quant_type: nf4" in template.stdout
    (tmp_path / "q.yaml").write_text(template.stdout)
    # the template names example data files (data/train.jsonl): check the config and the model, not the data
    assert tuneforge("config", "validate", tmp_path / "q.yaml", "--no-check-data").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(template.stdout.replace("  bits: 4", "  bits: 3"))
    assert_clean_error(tuneforge("config", "validate", bad), "method.bits")


def test_models_lists_builtins_and_architectures():
    result = tuneforge("models")
    assert result.returncode == 0
    for needle in ("smollm2-135m", "minilm-l6", "llama", "q_proj", "bert"):
        assert needle in result.stdout


def test_chat_loads_the_model_once_for_the_whole_conversation(tiny_model, monkeypatch):
    from typer.testing import CliRunner

    from tuneforge.cli.app import app
    from tuneforge.models import inference

    loads = []
    real = inference.load_for_inference

    def counting(reference, **kwargs):
        loads.append(reference)
        return real(reference, **kwargs)

    monkeypatch.setattr(inference, "load_for_inference", counting)
    result = CliRunner().invoke(app, ["generate", str(tiny_model), "--chat", "--max-new-tokens", "2"],
                                input="Hello\nWhat is 1 plus 2?\nAnd 2 plus 2?\n\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("model>") == 3  # three turns answered
    assert "[bold]" not in result.output and "[/]" not in result.output  # markup rendered, not shown
    assert loads == [str(tiny_model)]  # one load for all of them


def adapter_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_resume_after_kill_matches_an_uninterrupted_run(tiny_model, memorize_data, tmp_path):
    overrides = {"train": {"epochs": 60, "batch_size": 2, "save_steps": 10, "save_total_limit": 3, "logging_steps": 10}}
    straight = write_config(tmp_path / "a.yaml", tiny_model, memorize_data, tmp_path / "a", **overrides)
    assert tuneforge("train", straight).returncode == 0

    killed = write_config(tmp_path / "b.yaml", tiny_model, memorize_data, tmp_path / "b", **overrides)
    process = subprocess.Popen([*CLI, "train", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # A complete checkpoint: its trainer_state.json reads back whole (the file exists from the moment transformers opens
    # it, and a kill mid-write leaves a checkpoint that --resume rightly skips).
    while not RunDir(tmp_path / "b").complete_checkpoints():
        assert process.poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "b" / "summary.json").exists()
    refused = tuneforge("train", killed)
    assert_clean_error(refused, "unfinished run", "--resume")

    resumed = tuneforge("train", killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["resumed_from"].startswith("checkpoint-") and summary["global_step"] == 240
    a, b = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_merge_adapters_command(tiny_model, memorize_data, tmp_path):
    for name in ("a", "b"):
        config = write_config(tmp_path / f"{name}.yaml", tiny_model, memorize_data, tmp_path / name,
                              train={"max_steps": 2}, seed=1 if name == "a" else 2)
        assert tuneforge("train", config).returncode == 0
    result = tuneforge("merge-adapters", tmp_path / "a", tmp_path / "b", "-w", "0.5", "-w", "0.5",
                       "--method", "ties", "--output", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "adapter_config.json").is_file()
    assert_clean_error(tuneforge("merge-adapters", tmp_path / "a", tmp_path / "b", "-w", "1", "--output", tmp_path / "n"),
                       "1 weights for 2 adapters")


def test_a_missing_option_shows_the_usage_line():
    result = tuneforge("data", "import", "train.jsonl")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data import [OPTIONS]" in result.stderr and "Missing option '--name'" in result.stderr
