"""Data files and formats: detection, normalization, loss masks, and errors naming file and line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fixtures.data import write_jsonl
from tuneforge.data import IGNORE_INDEX, load_examples, tokenize_examples
from tuneforge.errors import DataError
from tuneforge.models.loading import load_tokenizer

CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        (CHAT, "messages"),
        ({"instruction": "Add", "input": "1 2", "output": "3"}, "alpaca"),
        ({"prompt": "Capital of France?", "completion": "Paris"}, "prompt_completion"),
        ({"text": "great film", "label": "positive"}, "classification"),
        ({"text": "Just some raw text."}, "text"),
    ],
)
def test_formats_are_detected(tmp_path, row, fmt):
    examples, detected = load_examples(write_jsonl(tmp_path / "d.jsonl", [row, row]))
    assert detected == fmt and len(examples) == 2


def test_alpaca_becomes_a_conversation_with_input_appended(tmp_path):
    examples, _ = load_examples(write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Add", "input": "1 2", "output": "3"}]))
    assert examples[0].messages[0]["content"] == "Add\n\n1 2"
    assert examples[0].messages[1] == {"role": "assistant", "content": "3", "weight": 1}


def test_bad_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(CHAT) + "\n" + json.dumps(CHAT) + "\n{not json\n")
    with pytest.raises(DataError) as caught:
        load_examples(path)
    assert caught.value.file == str(path) and caught.value.line == 3 and "not valid JSON" in str(caught.value)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "role is 'robot'"),
        ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
        ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "y"}]}, "content must be"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y", "weight": 2}]}, "weight"),
    ],
)
def test_bad_records_name_line_and_reason(tmp_path, bad, reason):
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT, bad])
    with pytest.raises(DataError, match=reason) as caught:
        load_examples(path)
    assert caught.value.line == 2


def test_missing_key_for_a_forced_format(tmp_path):
    with pytest.raises(DataError, match="missing key 'completion'"):
        load_examples(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "x"}]), fmt="prompt_completion")


def test_unknown_keys_cannot_be_detected(tmp_path):
    with pytest.raises(DataError, match="cannot tell the data format"):
        load_examples(write_jsonl(tmp_path / "d.jsonl", [{"question": "x", "answer": "y"}]))


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_examples(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        load_examples(tmp_path / "empty.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported data file type"):
        load_examples(tmp_path / "d.txt")


def test_json_csv_and_parquet_files(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows, indent=2))
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.json", "d.csv", "d.parquet"):
        examples, fmt = load_examples(tmp_path / name)
        assert fmt == "prompt_completion" and [e.messages[1]["content"] for e in examples] == ["a0", "a1", "a2"]
    bad = rows + [{"prompt": "", "completion": "x"}]
    (tmp_path / "bad.json").write_text(json.dumps(bad, indent=2))
    with pytest.raises(DataError) as caught:
        load_examples(tmp_path / "bad.json")
    assert caught.value.line == 14  # the line where the fourth object starts
    pd.DataFrame(bad).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError) as caught:
        load_examples(tmp_path / "bad.csv")
    assert caught.value.line == 5  # header is line 1


def test_loss_mask_covers_assistant_tokens_only(tmp_path, tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    row = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "Four", "weight": 0},
        {"role": "user", "content": "And one plus one?"},
        {"role": "assistant", "content": "Two"},
    ]}
    examples, _ = load_examples(write_jsonl(tmp_path / "d.jsonl", [row]))
    rows, stats = tokenize_examples(examples, tokenizer, max_seq_length=512)
    trained = tokenizer.decode([t for t in rows[0]["labels"] if t != IGNORE_INDEX])
    assert trained.startswith("Two<|im_end|>") and "Four" not in trained
    assert stats.examples == 1 and stats.trained_tokens == sum(t != IGNORE_INDEX for t in rows[0]["labels"])
    all_rows, _ = tokenize_examples(examples, tokenizer, max_seq_length=512, train_on_prompt=True)
    assert all_rows[0]["labels"] == all_rows[0]["input_ids"]


def test_truncation_is_counted_and_text_is_chunked(tmp_path, tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    long = {"messages": [{"role": "user", "content": "word " * 5}, {"role": "assistant", "content": "yes " * 80}]}
    examples, _ = load_examples(write_jsonl(tmp_path / "d.jsonl", [long, CHAT]))
    rows, stats = tokenize_examples(examples, tokenizer, max_seq_length=64)
    assert stats.truncated == 1 and max(len(r["input_ids"]) for r in rows) == 64
    texts, _ = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "the quick brown fox " * 20}]))
    rows, stats = tokenize_examples(texts, tokenizer, max_seq_length=16)
    assert len(rows) > 2 and all(len(r["input_ids"]) <= 16 for r in rows) and stats.truncated == 0
