"""Training on a tiny random Llama: every method learns, outputs reload, runs are reproducible."""

from __future__ import annotations

import json

import pytest
import torch

from tuneforge.config import TrainConfig
from tuneforge.errors import ConflictError, DataError
from tuneforge.training import run_training

LEARNING_RATES = {"lora": 1e-2, "dora": 1e-2, "qlora": 1e-2, "full": 3e-3, "freeze": 3e-3}


def tiny_config(model, data, out, *, method="lora", epochs=30, **train) -> TrainConfig:
    settings = {"epochs": epochs, "learning_rate": LEARNING_RATES[method if isinstance(method, str) else method["name"]],
                "batch_size": 4, "logging_steps": 1, "precision": "fp32", **train}
    return TrainConfig(model=str(model), method=method, data={"train": str(data)}, train=settings, output_dir=str(out))


def losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_bf16_autocast_run_learns(tiny_model, memorize_data, tmp_path, settings):
    result = run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", precision="auto"), settings=settings)
    assert result.summary["final_loss"] < 0.5 * losses(tmp_path / "run")[0]


@pytest.mark.parametrize("method", ["lora", "dora", "qlora", "full", "freeze"])
def test_loss_falls_on_a_memorizable_set(tiny_model, memorize_data, tmp_path, method, settings):
    result = run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", method=method), settings=settings)
    curve = losses(tmp_path / "run")
    assert curve[-1] < 0.2 * curve[0], curve
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["method"] == method and 0 < summary["trainable_parameters"] <= summary["total_parameters"]
    assert summary["trained_tokens"] > 0 and summary["tokens_per_second"] > 0 and summary["peak_memory_mb"] > 0
    artifact = "adapter" if method in ("lora", "dora", "qlora") else "model"
    assert result.model_path == tmp_path / "run" / artifact
    assert "# run\n" in (tmp_path / "run" / "README.md").read_text()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_freeze_trains_only_the_last_layers(tiny_model, memorize_data, tmp_path, settings):
    from transformers import AutoModelForCausalLM

    freeze = {"name": "freeze", "trainable_layers": 1}
    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", method=freeze, epochs=2), settings=settings)
    before = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in changed), changed


def test_adapter_reloads_with_plain_peft_and_merges(tiny_model, memorize_data, tmp_path, settings):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.models.inference import load_for_inference
    from tuneforge.services.training import merge_run

    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", epochs=3), settings=settings)
    inputs = torch.tensor([[5, 17, 42, 99, 7, 3]])
    ours, _, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "run" / "adapter").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        logits = ours(inputs).logits
        assert torch.equal(logits, plain(inputs).logits)
        assert not torch.allclose(logits, base(inputs).logits)  # the adapter does something
        merged_dir = merge_run(tmp_path / "run", output=tmp_path / "merged", settings=settings)
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
        assert torch.allclose(merged(inputs).logits, logits, atol=1e-5)


def test_same_seed_gives_the_same_loss_curve(tiny_model, memorize_data, tmp_path, settings):
    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "a", epochs=4), settings=settings)
    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "b", epochs=4), settings=settings)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    other = tiny_config(tiny_model, memorize_data, tmp_path / "c", epochs=4).model_copy(update={"seed": 7})
    run_training(other, settings=settings)
    assert losses(tmp_path / "c") != losses(tmp_path / "a")


def test_output_dir_holding_another_run_is_refused_and_left_intact(tiny_model, memorize_data, tmp_path, settings):
    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", epochs=2), settings=settings)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    with pytest.raises(ConflictError, match="already completed"):
        run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", epochs=2), settings=settings)
    with pytest.raises(ConflictError, match="holds another run"):
        run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", epochs=3), settings=settings)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before
    run_training(tiny_config(tiny_model, memorize_data, tmp_path / "run", epochs=3), overwrite=True, settings=settings)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs"] == 3


def test_bad_data_fails_before_anything_is_written(tiny_model, memorize_data, tmp_path, settings):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(memorize_data.read_text() + '{"messages": [{"role": "user"}]}\n')
    with pytest.raises(DataError) as caught:
        run_training(tiny_config(tiny_model, bad, tmp_path / "run"), settings=settings)
    assert caught.value.line == 9 and not (tmp_path / "run").exists()


def test_early_stopping_and_step_checkpoints(tiny_model, memorize_data, tmp_path, settings):
    config = TrainConfig(
        model=str(tiny_model), method="lora",
        data={"train": str(memorize_data), "eval": str(memorize_data)},
        train={"epochs": 50, "learning_rate": 1e-2, "batch_size": 4, "eval_steps": 2, "save_steps": 4,
               "save_total_limit": 2, "early_stopping_patience": 1, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    assert result.summary["global_step"] < 100  # stopped early
    assert result.summary["eval_loss"] is not None
    assert len(list((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))) <= 2
