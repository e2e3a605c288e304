"""Combining LoRA adapters: the arithmetic is exact where it should be, bad combinations are refused."""

from __future__ import annotations

import pytest
import torch

from fixtures.data import MEMORIZE, write_jsonl
from tuneforge.config import TrainConfig, validate_config
from tuneforge.errors import ConfigError
from tuneforge.services.adapters import MergeAdaptersConfig, merge_adapters
from tuneforge.training import run_training


def delta(model_dir, adapter_dir):
    """The weight update an adapter makes, from a merged copy minus the base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir).merge_and_unload()
    return {k: v - base[k] for k, v in merged.state_dict().items()}


@pytest.fixture(scope="module")
def two_runs(tiny_model, tmp_path_factory, settings):
    folder = tmp_path_factory.mktemp("adapters")
    halves = {"a": MEMORIZE[:4], "b": MEMORIZE[4:]}
    for name, rows in halves.items():
        data = write_jsonl(folder / f"{name}.jsonl", rows)
        run_training(TrainConfig(
            model=str(tiny_model), method={"name": "lora", "r": 4}, data={"train": str(data)},
            train={"epochs": 5, "learning_rate": 1e-2, "batch_size": 2, "precision": "fp32"},
            output_dir=str(folder / f"run-{name}"), seed=1 if name == "a" else 2,
        ), settings=settings)
    return folder / "run-a", folder / "run-b"


def test_task_arithmetic_adds_the_weighted_updates_exactly(tiny_model, two_runs, tmp_path, settings):
    out = merge_adapters(MergeAdaptersConfig(
        adapters=[str(two_runs[0]), str(two_runs[1])], weights=[0.7, 0.3], output=str(tmp_path / "m"),
    ), settings=settings)
    da, db, dm = delta(tiny_model, two_runs[0] / "adapter"), delta(tiny_model, two_runs[1] / "adapter"), delta(tiny_model, out)
    changed = [k for k in dm if dm[k].abs().max() > 0]
    assert changed
    for key in changed:
        assert torch.allclose(dm[key], 0.7 * da[key] + 0.3 * db[key], atol=1e-5), key


@pytest.mark.parametrize("method", ["linear", "svd", "ties", "dare_ties"])
def test_other_combinations_write_a_loadable_adapter(tiny_model, two_runs, tmp_path, method, settings):
    from tuneforge.models.inference import load_for_inference

    out = merge_adapters(MergeAdaptersConfig(
        adapters=[str(r) for r in two_runs], weights=[0.5, 0.5], method=method, output=str(tmp_path / "m"),
    ), settings=settings)
    model, _, source = load_for_inference(str(out), cache_dir=settings.model_cache_dir)
    assert source.adapter == out and (out / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


def test_bad_combinations_are_refused(tiny_model, two_runs, tmp_path):
    with pytest.raises(ConfigError, match="2 weights for 3 adapters"):
        validate_config({"adapters": ["a", "b", "c"], "weights": [1, 1], "output": "o"}, MergeAdaptersConfig)
    with pytest.raises(ConfigError, match="density applies to"):
        validate_config({"adapters": ["a", "b"], "density": 0.3, "output": "o"}, MergeAdaptersConfig)
    with pytest.raises(ConfigError, match="at least 2"):
        validate_config({"adapters": ["a"], "output": "o"}, MergeAdaptersConfig)
