"""The PEFT methods beyond LoRA: each trains a tiny model with falling loss and round-trips save/load."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError
from tuneforge.training import run_training

METHODS = {
    "prefix_tuning": {"name": "prefix_tuning", "num_virtual_tokens": 8},
    "prompt_tuning": {"name": "prompt_tuning", "num_virtual_tokens": 8},
    "prompt_tuning_text": {"name": "prompt_tuning", "num_virtual_tokens": 8, "init_text": "Add the numbers"},
    "p_tuning": {"name": "p_tuning", "num_virtual_tokens": 8, "encoder_hidden_size": 32},
    "ia3": {"name": "ia3"},
    "adalora": {"name": "adalora", "init_r": 8, "target_r": 4},
    "loraplus": {"name": "lora", "loraplus_lr_ratio": 16},
    "pissa": {"name": "lora", "init": "pissa", "r": 8},
    "olora": {"name": "lora", "init": "olora", "r": 8},
    "bottleneck": {"name": "bottleneck", "size": 8},
}
LEARNING_RATES = {"bottleneck": 3e-3, "ia3": 3e-2, "prefix_tuning": 3e-2, "prompt_tuning": 3e-1, "p_tuning": 1e-2}


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.parametrize("key", list(METHODS))
def test_method_learns_and_round_trips(tiny_model, memorize_data, tmp_path, key, settings):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.models.inference import load_for_inference

    method = METHODS[key]
    config = TrainConfig(
        model=str(tiny_model), method=method, data={"train": str(memorize_data)},
        train={"epochs": 30, "learning_rate": LEARNING_RATES.get(method["name"], 1e-2), "batch_size": 4,
               "logging_steps": 1, "precision": "fp32", "warmup": 0},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    curve = losses(tmp_path / "run")
    assert min(curve[-3:]) < 0.7 * curve[0], curve
    inputs = torch.tensor([[5, 17, 42, 99, 7, 3]])
    ours, _, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), result.model_path).eval()
    with torch.no_grad():
        assert torch.allclose(ours(inputs).logits, plain(inputs).logits, atol=1e-6)


def test_prompt_learning_runs_refuse_to_merge(tiny_model, memorize_data, tmp_path, settings):
    from tuneforge.services.training import merge_run

    config = TrainConfig(
        model=str(tiny_model), method={"name": "prefix_tuning", "num_virtual_tokens": 4},
        data={"train": str(memorize_data)}, train={"max_steps": 2, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    run_training(config, settings=settings)
    with pytest.raises(ConfigError, match="cannot be merged") as caught:
        merge_run(tmp_path / "run", output=tmp_path / "merged", settings=settings)
    assert caught.value.field == "method.name" and not (tmp_path / "merged").exists()


def test_adalora_needs_room_between_tinit_and_tfinal(tiny_model, memorize_data, tmp_path, settings):
    config = TrainConfig(
        model=str(tiny_model), method={"name": "adalora", "tinit": 0.5, "tfinal": 0.45},
        data={"train": str(memorize_data)}, train={"max_steps": 4, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ConfigError, match="AdaLoRA needs steps"):
        run_training(config, settings=settings)


def test_bottleneck_adapts_the_block_outputs_only(tiny_model, tmp_path, memorize_data, settings):
    from peft import PeftConfig

    config = TrainConfig(
        model=str(tiny_model), method={"name": "bottleneck", "size": 8, "scaling": 2.0},
        data={"train": str(memorize_data)}, train={"max_steps": 1, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    saved = PeftConfig.from_pretrained(run_training(config, settings=settings).model_path)
    assert set(saved.target_modules) == {"o_proj", "down_proj"}
    assert (saved.r, saved.lora_alpha / saved.r) == (8, 2.0)
