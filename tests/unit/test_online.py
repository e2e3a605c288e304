"""The options of incremental updates: go-live targets, --every periods, preference detection, new-record counts."""

from __future__ import annotations

import json

import pytest

from tuneforge.errors import ConfigError


def test_go_live_targets_and_bad_values():
    from tuneforge.services.online import UpdateRequest, go_live_target

    assert go_live_target("staging") == ("staging", None) and go_live_target("production") == ("production", None)
    assert go_live_target("split:0.1") == ("split", 0.1)
    for bad in ("canary", "split:0", "split:1", "split:x", "split"):
        with pytest.raises(ConfigError, match="staging, production or split:SHARE"):
            go_live_target(bad)
    request = UpdateRequest.model_validate({"name": "bot", "from": "prod", "dataset": "d", "since": 1, "suite": "s.yaml"})
    assert (request.from_alias, request.replay, request.max_drop, request.go_live) == \
        ("prod", 0.2, ["exact_match=0.02"], "staging")
    with pytest.raises(ValueError, match="replay"):
        UpdateRequest.model_validate({"name": "bot", "dataset": "d", "since": 1, "suite": "s", "replay": 1.5})


def test_every_periods():
    from tuneforge.cli.update import parse_every

    assert [parse_every(v) for v in ("90s", "15m", "1h", "1d", "30", "0.5h")] == [90, 900, 3600, 86400, 30, 1800]
    for bad in ("0", "1w", "soon", "-1h"):
        with pytest.raises(ConfigError, match="--every"):
            parse_every(bad)


def test_preference_pairs_are_detected(tmp_path):
    from tuneforge.services.online import is_preference

    pairs = {"prompt": "q", "chosen": "a", "rejected": "b"}
    openai_pairs = {"input": {"messages": []}, "preferred_output": [], "non_preferred_output": []}
    chat = {"messages": [{"role": "user", "content": "q"}]}
    for record, expected in ((pairs, True), (openai_pairs, True), (chat, False)):
        path = tmp_path / "r.jsonl"
        path.write_text(json.dumps(record) + "\n")
        assert is_preference(path) is expected


def test_new_records_are_counted_against_the_older_version(tmp_path):
    from tuneforge.services.datasets import append_data, import_data
    from tuneforge.services.online import count_new_records
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings

    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(7)]
    for name, part in (("v1", rows[:3]), ("v2", rows[3:] + rows[:1])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    platform = open_platform(Settings(home=str(tmp_path / "home")))
    try:
        import_data(platform, tmp_path / "v1.jsonl", project="p", name="d")
        append_data(platform, "d", tmp_path / "v2.jsonl", project="p")  # the repeated record is not appended
        assert count_new_records(platform, "d", since=1, project="p") == 4
        assert count_new_records(platform, "d:2", since=2, project="p") == 0
        assert count_new_records(platform, "d:1", since=1, project="p") == 0
    finally:
        platform.close()


def test_training_data_sha256_of_a_single_data_source(tmp_path):
    from tuneforge.registry.models import file_sha256
    from tuneforge.services.registry import training_data_sha256

    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n')
    assert training_data_sha256({"data": {"train": str(data)}}) == file_sha256(data)
    assert training_data_sha256({"data": {"train": [{"path": str(data), "dataset": "d:2"}]}}) == file_sha256(data)
    assert training_data_sha256({"data": {"train": [{"path": str(data)}, {"path": str(data)}]}}) is None
