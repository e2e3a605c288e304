"""Task types on tiny models: each trains and its task metric moves on held-out data."""

from __future__ import annotations

import json
import random

import pytest
import torch

from fixtures.data import write_jsonl
from fixtures.tiny import build_tiny
from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError
from tuneforge.models.inference import load_for_inference
from tuneforge.services.evaluation import evaluate
from tuneforge.training import run_training

POSITIVE = "good great nice fine superb lovely".split()
NEGATIVE = "bad awful poor grim dreadful nasty".split()
FILLER = "the film was it a day and so".split()


def sentiment(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if label == "positive" else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(model_type):
        if model_type not in cache:
            cache[model_type] = build_tiny(model_type, tmp_path_factory.mktemp(model_type))
        return cache[model_type]

    return get


def classify(reference, rows, settings) -> float:
    model, tokenizer, _ = load_for_inference(str(reference), cache_dir=settings.model_cache_dir)
    batch = tokenizer([r["text"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    return sum(model.config.id2label[p] == r["label"] for p, r in zip(predicted, rows)) / len(rows)


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_classification_learns_held_out_sentiment(tiny, tmp_path, model_type, settings):
    train = write_jsonl(tmp_path / "train.jsonl", sentiment(240, 0))
    test = sentiment(40, 1)
    config = TrainConfig(
        model=str(tiny(model_type)), method={"name": "lora", "r": 8}, task="classification",
        data={"train": str(train), "eval": str(write_jsonl(tmp_path / "test.jsonl", test))},
        train={"epochs": 6, "learning_rate": 5e-3, "batch_size": 8, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    assert result.summary["dataset"]["labels"] == ["negative", "positive"]
    accuracy = classify(tmp_path / "run", test, settings)
    print(f"{model_type} classification held-out accuracy {accuracy:.2f}")
    assert accuracy >= 0.75  # chance is 0.5: the classes are balanced
    report = evaluate(str(tmp_path / "run"), {"tasks": [{"data": str(tmp_path / "test.jsonl")}],
                                             "latency_samples": 0}, store=False, settings=settings)
    task = report.tasks[0]
    assert task.task_type == "classification" and task.metrics["accuracy"] == pytest.approx(accuracy)
    assert {e.prediction for e in task.per_example} <= {"negative", "positive"}


WORDS = {"one": "uno", "two": "dos", "three": "tres", "four": "cuatro", "five": "cinco", "six": "seis"}


def translations(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(list(WORDS), 2)
        rows.append({"prompt": "translate: " + " ".join(words), "completion": " ".join(WORDS[w] for w in words)})
    return rows


def generate_seq2seq(reference, rows, settings) -> float:
    from tuneforge.evaluation.metrics import exact_match

    model, tokenizer, _ = load_for_inference(str(reference), cache_dir=settings.model_cache_dir)
    batch = tokenizer([r["prompt"] for r in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    predictions = tokenizer.batch_decode(out, skip_special_tokens=True)
    return sum(exact_match(predictions, [r["completion"] for r in rows])) / len(rows)


@pytest.mark.parametrize(("model_type", "learning_rate", "floor"), [("t5", 1e-2, 0.3), ("bart", 3e-3, 0.75)])
def test_seq2seq_learns_to_translate(tiny, tmp_path, model_type, learning_rate, floor, settings):
    train = write_jsonl(tmp_path / "train.jsonl", translations(60, 0))
    test = translations(12, 1)
    before = generate_seq2seq(tiny(model_type), test, settings)
    config = TrainConfig(
        model=str(tiny(model_type)), method="full", task="seq2seq", data={"train": str(train)},
        train={"epochs": 25, "learning_rate": learning_rate, "batch_size": 8, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    run_training(config, settings=settings)
    after = generate_seq2seq(tmp_path / "run", test, settings)
    print(f"{model_type} held-out translation exact match {before:.2f} -> {after:.2f}")
    assert before == 0 and after >= floor, (before, after)


def test_seq2seq_on_a_decoder_only_model_names_the_field(tiny, tmp_path, settings):
    train = write_jsonl(tmp_path / "train.jsonl", translations(4, 0))
    config = TrainConfig(model=str(tiny("llama")), task="seq2seq", data={"train": str(train)},
                         output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="needs an encoder-decoder") as caught:
        run_training(config, settings=settings)
    assert caught.value.field == "task.name"


COLORS = "red blue green black white pink".split()
THINGS = "box car cup hat bag pen".split()


def qa_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        thing, color = rng.choice(THINGS), rng.choice(COLORS)
        other = rng.choice([t for t in THINGS if t != thing])
        context = f"The {thing} is {color}. The {other} is {rng.choice(COLORS)}."
        rows.append({"context": context, "question": f"What color is the {thing}?", "answer": color})
    return rows


def test_generative_qa_on_a_decoder_reads_the_context(tiny, tmp_path, settings):
    from tuneforge.data import load_examples
    from tuneforge.evaluation.evaluate import evaluate_exact_match

    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(200, 0))
    test = write_jsonl(tmp_path / "test.jsonl", qa_rows(30, 1))
    examples, fmt = load_examples(test)
    base, tokenizer, _ = load_for_inference(str(tiny("llama")), cache_dir=settings.model_cache_dir)
    before = evaluate_exact_match(base, tokenizer, examples, max_new_tokens=4).accuracy
    config = TrainConfig(
        model=str(tiny("llama")), method="full", task="qa", data={"train": str(train)},
        train={"epochs": 6, "learning_rate": 3e-3, "batch_size": 8, "precision": "fp32"},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    tuned, tokenizer, _ = load_for_inference(str(tmp_path / "run"), cache_dir=settings.model_cache_dir)
    after = evaluate_exact_match(tuned, tokenizer, examples, max_new_tokens=4).accuracy
    print(f"qa held-out exact match {before:.2f} -> {after:.2f}")
    assert fmt == "qa" and result.summary["data_format"] == "qa"
    assert after >= before + 0.4, (before, after)  # 1 in 6 colors by guessing


def test_pretrain_lowers_held_out_perplexity(tiny, tmp_path, settings):
    import math

    sentences = [f"the {t} is {c} and the {c} {t} is here" for t in THINGS for c in COLORS]
    random.Random(0).shuffle(sentences)
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": s} for s in sentences[:30]])
    held = write_jsonl(tmp_path / "held.jsonl", [{"text": s} for s in sentences[30:]])
    config = TrainConfig(
        model=str(tiny("llama")), method="lora", task="pretrain", data={"train": str(train), "eval": str(held)},
        train={"epochs": 8, "learning_rate": 1e-2, "batch_size": 8, "precision": "fp32", "max_seq_length": 64},
        output_dir=str(tmp_path / "run"),
    )
    result = run_training(config, settings=settings)
    first_eval = next(json.loads(line)["eval_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                      if "eval_loss" in line)
    assert result.summary["data_format"] == "text" and result.summary["dataset"]["trained_tokens"] == result.summary["dataset"]["tokens"]
    assert math.exp(result.summary["eval_loss"]) < 0.5 * math.exp(first_eval)


def test_pretrain_refuses_chat_records(tiny, tmp_path, settings):
    data = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": "a", "completion": "b"}])
    config = TrainConfig(model=str(tiny("llama")), task="pretrain", data={"train": str(data), "format": "prompt_completion"},
                         output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="trains on raw text"):
        run_training(config, settings=settings)
