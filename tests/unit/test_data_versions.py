"""Dataset versions through the services, on a real SQLite store and artifact folder."""

from __future__ import annotations

import csv
import json

import pytest

from tuneforge.errors import ConfigError, DataError, NotFoundError, TooLargeError
from tuneforge.services import datasets as ds
from tuneforge.services.data_reports import materialize_data, materialize_data_version
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings

P = "proj"


def chat(i: int, answer: str | None = None) -> dict:
    return {"messages": [{"role": "user", "content": f"Question number {i}: how do I fix problem {i * 7}?"},
                         {"role": "assistant", "content": answer or f"Restart step {i}."}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def platform(tmp_path):
    settings = Settings(home=str(tmp_path / "home"), max_upload_bytes=200_000)
    plat = open_platform(settings)
    yield plat
    plat.close()


def test_every_source_type_imports_and_the_same_content_is_stored_once(platform, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": f"review {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    with (tmp_path / "a.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))

    first = ds.import_data(platform, tmp_path / "a.jsonl", project=P, name="reviews")
    assert first.created and first.version.ref == "reviews:1" and first.version.format == "classification"
    assert first.version.records == 6 and first.version.stats["tokens"] > 0
    for source in ("a.json", "a.csv", "a.parquet", "hf"):  # normalized records: one content, one version
        again = ds.import_data(platform, tmp_path / source, project=P, name="reviews")
        assert not again.created and again.version.id == first.version.id, source
    assert [v.version for v in ds.list_data_versions(platform, "reviews", project=P)] == [1]


def test_bad_input_names_the_problem_and_stores_nothing(platform, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(chat(1)) + "\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: .*no assistant message"):
        ds.import_data(platform, bad, project=P, name="chat")
    big = write_jsonl(tmp_path / "big.jsonl", [chat(i, "x" * 1000) for i in range(300)])
    with pytest.raises(TooLargeError, match="over the limit of 200,000 bytes"):
        ds.import_data(platform, big, project=P, name="chat")
    assert ds.list_data_sets(platform, project=P) == []
    assert not list((platform.settings.artifacts_dir).glob("*/*"))

    ds.import_data(platform, write_jsonl(tmp_path / "ok.jsonl", [chat(1), chat(2)]), project=P, name="chat")
    with pytest.raises(NotFoundError, match="did you mean 'chat'") as missing:
        ds.show_data(platform, "chta:1", project=P)
    assert "tuneforge data import" in missing.value.hint
    with pytest.raises(NotFoundError, match="has no version 4") as version:
        ds.show_data(platform, "chat:4", project=P)
    assert "its versions are 1" in version.value.hint
    with pytest.raises(ConfigError, match="not a positive number"):
        ds.show_data(platform, "chat:x", project=P)
    with pytest.raises(DataError, match="test side empty"):
        ds.split_data(platform, "chat:1", ds.SplitOptions(test=0.1), project=P)
    assert [d.name for d in ds.list_data_sets(platform, project=P)] == ["chat"]


def test_append_skips_duplicates_and_split_keeps_sides_apart(platform, tmp_path):
    ds.import_data(platform, write_jsonl(tmp_path / "a.jsonl", [chat(i) for i in range(40)]), project=P, name="c")
    more = write_jsonl(tmp_path / "b.jsonl", [chat(3), chat(40), chat(41), chat(41), chat(5)])
    appended = ds.append_data(platform, "c", more, project=P)
    version = appended.version
    assert appended.created and version.ref == "c:2" and version.operation == "append" and version.records == 42
    assert version.details == {"base_version": 1, "base_records": 40, "added": 2, "skipped_duplicates": 3}
    assert ds.show_data(platform, "c@latest", project=P)["lineage"][1]["ref"] == "c:1"
    unchanged = ds.append_data(platform, "c", more, project=P)
    assert not unchanged.created and unchanged.version.ref == "c:2" and unchanged.note["skipped_duplicates"] == 5

    diff = ds.diff_data(platform, "c:1", "c:2", project=P)
    assert diff["added"] == [40, 41] and diff["removed"] == [] and diff["unchanged"] == 40

    train, test = ds.split_data(platform, "c:2", ds.SplitOptions(test=0.25, seed=7), project=P)
    assert (train.version.ref, test.version.ref) == ("c-train:1", "c-test:1")
    _, train_rows = ds.records_of(platform, "c-train:1", project=P)
    _, test_rows = ds.records_of(platform, "c-test:1", project=P)
    assert len(test_rows) == 10 and len(train_rows) == 32  # round(42 * 0.25)
    assert not {json.dumps(r) for r in train_rows} & {json.dumps(r) for r in test_rows}
    again = ds.split_data(platform, "c:2", ds.SplitOptions(test=0.25, seed=7), project=P)
    assert [o.version.id for o in again] == [train.version.id, test.version.id]  # same seed, same versions


def test_since_and_replay_are_deterministic(platform, tmp_path):
    ds.import_data(platform, write_jsonl(tmp_path / "a.jsonl", [chat(i) for i in range(50)]), project=P, name="inc")
    ds.append_data(platform, "inc", write_jsonl(tmp_path / "b.jsonl", [chat(i) for i in range(50, 60)]), project=P)
    whole = materialize_data_version(platform, "inc", project=P)
    assert whole.suffix == ".jsonl" and len(whole.read_text().splitlines()) == 60

    one = materialize_data(platform, "inc:2", project=P, since=1, replay=0.2, seed=3)
    two = materialize_data(platform, "inc@latest", project=P, since=1, replay=0.2, seed=3)
    other = materialize_data(platform, "inc:2", project=P, since=1, replay=0.2, seed=4)
    rows = [json.loads(line) for line in one.path.read_text().splitlines()]
    assert one.records == 20 and len(rows) == 20  # 10 new + 20% of the 50 older
    assert sum(r in [chat(i) for i in range(50, 60)] for r in rows) == 10
    assert one.path.read_bytes() == two.path.read_bytes()
    assert other.path.read_bytes() != one.path.read_bytes() and other.records == 20
    assert one.lineage() == {"dataset": "inc", "version": 2, "ref": "inc:2", "sha256": one.sha256, "records": 20,
                             "since": 1, "replay": 0.2, "seed": 3}
    only_new = materialize_data(platform, "inc", project=P, since=1)
    assert only_new.records == 10
    with pytest.raises(ConfigError, match="replay needs since"):
        materialize_data(platform, "inc", project=P, replay=0.5)
    with pytest.raises(ConfigError, match="not older"):
        materialize_data(platform, "inc:2", project=P, since=2)


def test_clean_makes_a_version_that_says_what_it_removed(platform, tmp_path):
    rows = [chat(i) for i in range(10)] + [chat(2), chat(3, "mail ops@example.com")]
    ds.import_data(platform, write_jsonl(tmp_path / "a.jsonl", rows), project=P, name="raw")
    cleaned = ds.clean_data(platform, "raw:1", ds.CleanOptions(dedup="exact", redact_pii=True), project=P)
    version = cleaned.version
    assert version.ref == "raw:2" and version.operation == "clean" and version.records == 11
    assert version.details["removed"]["duplicate"] == [{"index": 10, "kept": 2}]
    assert version.details["redacted"] == {"records": [11], "spans": {"EMAIL": 1}}
    assert ds.records_of(platform, "raw:2", project=P)[1][-1]["messages"][1]["content"] == "mail <EMAIL>"
    assert ds.records_of(platform, "raw:1", project=P)[1][-1]["messages"][1]["content"] == "mail ops@example.com"
    only_dedup = ds.clean_data(platform, "raw:2", ds.CleanOptions(dedup="exact"), project=P)
    assert not only_dedup.created and only_dedup.version.ref == "raw:2"  # nothing removed: the same content
    with pytest.raises(ConfigError, match="nothing to clean"):
        ds.clean_data(platform, "raw:1", ds.CleanOptions(), project=P)
    out = ds.export_data(platform, "raw:2", tmp_path / "out.json", project=P)
    assert len(json.loads(out.read_text())) == 11


def test_human_choices_become_preference_pairs(platform, tmp_path):
    rows = [
        {"prompt": "Capital of France?", "answers": ["Paris.", "Lyon."], "choice": "a"},
        {"prompt": [{"role": "user", "content": "2+2?"}], "answers": ["5", "4"], "choice": 1},
        {"prompt": "Tie?", "answers": ["x", "y"], "choice": "tie"},
        {"prompt": "Say hi", "response": "Hello!", "rating": 1},
        {"prompt": "Say hi", "response": "Go away.", "rating": -1},
        {"prompt": "Say hi", "response": "Hi.", "rating": 0},
        {"prompt": "Same", "response": "a", "rating": 1},
        {"prompt": "Same", "response": "b", "rating": 1},
    ]
    outcome = ds.pairs_data(platform, write_jsonl(tmp_path / "votes.jsonl", rows), project=P, name="prefs")
    version = outcome.version
    assert version.format == "preference" and version.operation == "annotate" and version.records == 3
    assert version.details == {"from_comparisons": 2, "from_ratings": 1, "skipped_ties": 1,
                               "skipped_prompts_without_preference": 1}
    pairs = ds.records_of(platform, "prefs:1", project=P)[1]
    assert pairs[0] == {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
    assert pairs[1]["chosen"] == "4" and pairs[2] == {"prompt": "Say hi", "chosen": "Hello!", "rejected": "Go away."}

    from tuneforge.data.preference import load_preference_pairs

    exported = ds.export_data(platform, "prefs:1", tmp_path / "dpo.jsonl", project=P)
    assert len(load_preference_pairs(exported)) == 3  # what DPO training reads
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], {"prompt": "x", "answers": ["a", "b"], "choice": "c"}])
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: 'choice' is 'c'"):
        ds.pairs_data(platform, bad, project=P, name="prefs")
    assert [v.version for v in ds.list_data_versions(platform, "prefs", project=P)] == [1]


def test_report_counts_tokens_with_a_models_tokenizer(platform, tmp_path, tiny_model):
    from tuneforge.services.data_reports import DataReportOptions, report_data

    ds.import_data(platform, write_jsonl(tmp_path / "a.jsonl", [chat(i) for i in range(12)]), project=P, name="tok")
    estimate = report_data(platform, "tok", DataReportOptions(), project=P)
    counted = report_data(platform, "tok", DataReportOptions(model=str(tiny_model), max_seq_length=5), project=P,
                          output=tmp_path / "rep")
    assert estimate["summary"]["tokenizer"].startswith("estimate")
    assert counted["summary"]["tokenizer"] == f"tokenizer of {tiny_model}"
    assert counted["tokens"]["total"] != estimate["tokens"]["total"]
    assert counted["tokens"]["over_max_seq_length"]["count"] == 12  # every record is longer than 5 tokens
    assert {i["kind"] for i in counted["issues"]} == {"too_long"}
    assert "tokenizer of" in (tmp_path / "rep" / "report.md").read_text()
