"""ShareGPT records, records longer than max_seq_length, weighted mixing, the eval split and chat templates."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fixtures.data import write_jsonl
from fixtures.tiny import build_tokenizer

from tuneforge.config import TrainConfig, validate_config
from tuneforge.data import load_examples, tokenize_examples
from tuneforge.data.mixing import load_mixture, mix_order, source_lines
from tuneforge.data.templates import NAMED_TEMPLATES, apply_chat_template_choice
from tuneforge.data.tokenize import overlong_message
from tuneforge.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def _chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_sharegpt_is_detected_and_normalized(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}])
    examples, fmt = load_examples(path)
    assert fmt == "sharegpt"
    assert [(m["role"], m["content"]) for m in examples[0].messages] == [
        ("system", "Be brief."), ("user", "hi"), ("assistant", "yo")]
    write_jsonl(path, [{"conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "yo"}]}])
    with pytest.raises(DataError, match=r"s\.jsonl, line 1: conversations\[1\]\.from is 'bot'"):
        load_examples(path)


def test_overlong_policies_name_file_and_lines(tmp_path, tokenizer):
    rows = [_chat("What is two plus two?", "Four."), _chat("The quick brown fox " * 20, "ok"),
            _chat("hi", "Paris."), _chat("abcdefghijklmnopqrstuvwxyz " * 10, "no")]
    examples, _ = load_examples(write_jsonl(tmp_path / "long.jsonl", rows))
    limit = 40
    kept, stats = tokenize_examples(examples, tokenizer, max_seq_length=limit, overlong="truncate")
    assert stats.overlong == 2 and stats.overlong_records == [f"{tmp_path / 'long.jsonl'}:2", f"{tmp_path / 'long.jsonl'}:4"]
    assert all(len(row["input_ids"]) <= limit for row in kept)
    message = overlong_message(stats.as_dict(), max_seq_length=limit)
    assert "2 record(s) longer than max_seq_length 40" in message and "long.jsonl lines 2, 4" in message
    assert "data.overlong: truncate" in message
    kept, stats = tokenize_examples(examples, tokenizer, max_seq_length=limit, overlong="drop")
    assert len(kept) == 2 and stats.dropped == 2 and stats.truncated == 0
    assert "dropped (data.overlong: drop)" in overlong_message(stats.as_dict(), max_seq_length=limit)
    with pytest.raises(DataError, match=r"2 record\(s\) longer than max_seq_length 40 tokens: .*long\.jsonl lines 2, 4"):
        tokenize_examples(examples, tokenizer, max_seq_length=limit, overlong="error")
    assert overlong_message(tokenize_examples(examples[:1], tokenizer, max_seq_length=limit)[1].as_dict(),
                            max_seq_length=limit) is None
    evaluation, _ = load_examples(write_jsonl(tmp_path / "eval.jsonl", rows[1:2]))
    stats = tokenize_examples(examples, tokenizer, max_seq_length=limit)[1]
    stats.add_overlong(tokenize_examples(evaluation + examples[1:2], tokenizer, max_seq_length=limit)[1])
    assert stats.overlong == 3 and "eval.jsonl line 1" in overlong_message(stats.as_dict(), max_seq_length=limit)


def _config(tmp_path, train, eval_=None, seed=7) -> TrainConfig:
    return validate_config({"model": "m", "data": {"train": train, "eval": eval_}, "seed": seed}, TrainConfig)


def _load(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_weights_are_sampling_probabilities_until_every_source_is_used(tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", [{"id": f"a{i}"} for i in range(60)])
    small = write_jsonl(tmp_path / "small.jsonl", [{"id": f"b{i}"} for i in range(6)])
    config = _config(tmp_path, [{"path": str(big), "weight": 0.5}, {"path": str(small), "weight": 0.5}])
    mixture = load_mixture(config.data, _load, seed=config.seed)
    ids = Counter(item["id"][0] for item in mixture.train)
    assert {item["id"] for item in mixture.train} >= {f"a{i}" for i in range(60)} | {f"b{i}" for i in range(6)}
    assert 45 <= ids["b"] <= 75 and ids["a"] == 60  # half the draws from 6 records: each repeats ~10 times
    assert [entry["drawn"] for entry in mixture.sources] == [ids["a"], ids["b"]]
    assert load_mixture(config.data, _load, seed=config.seed).train == mixture.train  # seeded
    assert mix_order([60, 6], weights=[1, 1], seed=8) != mix_order([60, 6], weights=[1, 1], seed=7)
    lines = source_lines(mixture.sources)
    assert len(lines) == 2 and "small.jsonl: 6 records, weight 0.5" in lines[1]
    unweighted = load_mixture(_config(tmp_path, [str(big), str(small)]).data, _load, seed=1)
    assert [item["id"] for item in unweighted.train] == [f"a{i}" for i in range(60)] + [f"b{i}" for i in range(6)]


def test_eval_split_holds_out_each_source_before_mixing(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": f"a{i}"} for i in range(40)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": f"b{i}"} for i in range(10)])
    config = _config(tmp_path, [{"path": str(a), "weight": 2}, {"path": str(b), "weight": 1}], {"split": 0.1})
    mixture = load_mixture(config.data, _load, seed=config.seed)
    held = {item["id"] for item in mixture.eval}
    assert len(held) == 5 and {i[0] for i in held} == {"a", "b"}  # 4 of a, 1 of b
    assert not held & {item["id"] for item in mixture.train}
    assert [e["held_out"] for e in mixture.sources] == [4, 1]
    again = load_mixture(config.data, _load, seed=config.seed)
    assert {item["id"] for item in again.eval} == held
    other = load_mixture(_config(tmp_path, str(a), {"split": 0.1}, seed=99).data, _load, seed=99)
    assert {item["id"] for item in other.eval} != {i for i in held if i[0] == "a"}
    tiny = write_jsonl(tmp_path / "one.jsonl", [{"id": "x"}])
    with pytest.raises(ConfigError, match="one.jsonl has 1 record: too few"):
        load_mixture(_config(tmp_path, str(tiny), {"split": 0.2}).data, _load, seed=1)


def test_an_unresolved_dataset_reference_is_a_config_error(tmp_path):
    config = _config(tmp_path, [{"dataset": "support:3", "weight": 1}, {"path": "x.jsonl", "weight": 1}])
    with pytest.raises(ConfigError, match="dataset references need the platform"):
        load_mixture(config.data, _load, seed=1)


@pytest.mark.parametrize("name", sorted(NAMED_TEMPLATES))
def test_named_templates_mask_assistant_turns(tmp_path, tokenizer, name):
    """Every named template renders turn by turn, so only assistant tokens carry a loss."""
    record = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
                           {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "and?"},
                           {"role": "assistant", "content": "Four."}]}
    examples, _ = load_examples(write_jsonl(tmp_path / "c.jsonl", [record]))
    apply_chat_template_choice(tokenizer, name)
    try:
        rows, _ = tokenize_examples(examples, tokenizer, max_seq_length=256)
    finally:
        apply_chat_template_choice(tokenizer, "chatml")
    trained = tokenizer.decode([t for t in rows[0]["labels"] if t != -100])
    assert "Paris." in trained and "Four." in trained and "hi" not in trained and "S" not in trained


def test_template_file_and_errors(tmp_path, tokenizer):
    path = tmp_path / "t.jinja"
    path.write_text(NAMED_TEMPLATES["phi3"])
    assert apply_chat_template_choice(tokenizer, str(path)) == NAMED_TEMPLATES["phi3"]
    apply_chat_template_choice(tokenizer, "chatml")
    with pytest.raises(ConfigError, match="chat template file not found"):
        apply_chat_template_choice(tokenizer, str(tmp_path / "missing.jinja"))
