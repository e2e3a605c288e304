"""DPO, KTO and ORPO through TRL on a tiny model: the margin of chosen over rejected rises on held-out pairs."""

from __future__ import annotations

import pytest

from fixtures.data import write_jsonl
from tuneforge.config import TrainConfig
from tuneforge.data.preference import load_preference_pairs
from tuneforge.errors import DataError
from tuneforge.evaluation.preference import preference_margins
from tuneforge.training import run_training


def pairs(numbers, *, openai=False):
    rows = []
    for a in numbers:
        prompt, good, bad = f"Is {a} a number?", "yes", "no"
        if openai:
            rows.append({"input": {"messages": [{"role": "user", "content": prompt}]},
                         "preferred_output": [{"role": "assistant", "content": good}],
                         "non_preferred_output": [{"role": "assistant", "content": bad}]})
        else:
            rows.append({"prompt": prompt, "chosen": good, "rejected": bad})
    return rows


@pytest.mark.parametrize(("task", "openai"), [("dpo", False), ("dpo", True), ("kto", False), ("orpo", False)])
def test_preference_tuning_raises_the_margin_on_held_out_pairs(tiny_model, tmp_path, task, openai, settings):
    from tuneforge.models.inference import load_for_inference

    train = write_jsonl(tmp_path / "train.jsonl", pairs(range(1, 9), openai=openai))
    held_out = load_preference_pairs(write_jsonl(tmp_path / "test.jsonl", pairs(range(20, 26))))
    config = TrainConfig(
        model=str(tiny_model), method={"name": "lora", "r": 8}, task={"name": task, "beta": 0.1},
        data={"train": str(train)},
        train={"epochs": 5, "learning_rate": 5e-3, "batch_size": 4, "precision": "fp32", "logging_steps": 1},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    assert result.summary["task"] == task and result.summary["data_format"] == "preference"
    base, tokenizer, _ = load_for_inference(str(tiny_model), cache_dir=settings.model_cache_dir)
    tuned, _, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    before = sum(preference_margins(base, tokenizer, held_out)) / len(held_out)
    after = sum(preference_margins(tuned, tokenizer, held_out)) / len(held_out)
    print(f"{task} mean held-out margin: {before:.3f} -> {after:.3f}")
    assert after > before + 1.0, (before, after)


def test_dpo_without_preference_columns_is_a_clear_error(tiny_model, memorize_data, tmp_path, settings):
    config = TrainConfig(model=str(tiny_model), task="dpo", data={"train": str(memorize_data)},
                         output_dir=str(tmp_path / "run"))
    with pytest.raises(DataError, match="not a preference pair") as caught:
        run_training(config, settings=settings)
    assert caught.value.line == 1 and "chosen" in caught.value.hint and not (tmp_path / "run").exists()
