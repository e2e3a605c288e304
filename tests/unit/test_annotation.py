"""Review of a data set version (the console's annotation page) through the services, on a real SQLite store."""

from __future__ import annotations

import json

import pytest

from tuneforge.errors import ConfigError, DataError
from tuneforge.services import annotation
from tuneforge.services import datasets as ds
from tuneforge.services.annotation import AnnotationRequest, Decision
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings

P = "proj"


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": str(2 * i)}]}


@pytest.fixture
def platform(tmp_path):
    plat = open_platform(Settings(home=str(tmp_path / "home")))
    yield plat
    plat.close()


def imported(platform, tmp_path, rows, name="qa"):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ds.import_data(platform, path, project=P, name=name).version


def review(*decisions: Decision) -> AnnotationRequest:
    return AnnotationRequest(decisions=list(decisions))


def test_accept_edit_reject_make_the_next_version_and_keep_unreviewed_records(platform, tmp_path):
    base = imported(platform, tmp_path, [chat(i) for i in range(5)])
    outcome = annotation.annotate_data(platform, base.ref, review(
        Decision(index=0, action="accept", answer="zero"), Decision(index=1, action="reject"),
        Decision(index=3, action="accept", answer="6")), project=P)  # 3 + 3 is 6: not an edit
    assert outcome.pairs is None
    version, records = ds.records_of(platform, outcome.reviewed.version.ref, project=P)
    assert (version.version, version.operation, version.parent_id, outcome.reviewed.created) == (
        2, "annotate", base.id, True)
    assert version.details == {"reviewed": 3, "accepted": 2, "rejected": 1, "edited": 1, "swapped": 0}
    assert [r["messages"][1]["content"] for r in records] == ["zero", "4", "6", "8"]  # index 1 (2) rejected
    assert ds.records_of(platform, base.ref, project=P)[1][0] == chat(0)  # the old version is untouched


def test_picking_the_other_answer_swaps_a_preference_pair(platform, tmp_path):
    pairs = [{"prompt": f"Say {w}", "chosen": f"{w}!", "rejected": "no"} for w in ("hi", "yes")]
    base = imported(platform, tmp_path, pairs, name="prefs")
    assert base.format == "preference"
    outcome = annotation.annotate_data(platform, base.ref, review(
        Decision(index=0, action="accept", better="b"), Decision(index=1, action="accept", better="a")), project=P)
    records = ds.records_of(platform, outcome.reviewed.version.ref, project=P)[1]
    assert [(r["chosen"], r["rejected"]) for r in records] == [("no", "hi!"), ("yes!", "no")]
    assert outcome.reviewed.version.details["swapped"] == 1


def test_edits_become_preference_pairs_that_load_for_dpo(platform, tmp_path):
    from tuneforge.data.preference import load_preference_pairs
    from tuneforge.services.data_reports import materialize_data

    base = imported(platform, tmp_path, [chat(i) for i in range(4)])
    request = AnnotationRequest(pairs_to="qa-prefs", decisions=[
        Decision(index=0, action="accept", answer="nothing"), Decision(index=1, action="accept"),
        Decision(index=2, action="accept", answer="four"), Decision(index=3, action="reject")])
    outcome = annotation.annotate_data(platform, base.ref, request, project=P)
    pairs = outcome.pairs.version
    assert (pairs.ref, pairs.format, pairs.operation) == ("qa-prefs:1", "preference", "annotate")
    assert pairs.parent_id == base.id
    records = ds.records_of(platform, pairs.ref, project=P)[1]
    assert records == [
        {"prompt": [{"role": "user", "content": "What is 0 plus 0?"}], "chosen": "nothing", "rejected": "0"},
        {"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], "chosen": "four", "rejected": "4"}]
    loaded = load_preference_pairs(materialize_data(platform, pairs.ref, project=P).path)
    assert loaded[1]["chosen"] == [{"role": "assistant", "content": "four"}]


def test_bad_reviews_are_refused_with_the_record_named(platform, tmp_path):
    base = imported(platform, tmp_path, [chat(i) for i in range(2)])
    with pytest.raises(ConfigError, match="record 5"):
        annotation.annotate_data(platform, base.ref, review(Decision(index=5, action="reject")), project=P)
    with pytest.raises(ConfigError, match="reviewed once"):
        annotation.annotate_data(platform, base.ref, review(Decision(index=0, action="reject"),
                                                            Decision(index=0, action="accept")), project=P)
    with pytest.raises(ConfigError, match="preference pairs"):
        annotation.annotate_data(platform, base.ref, review(Decision(index=0, action="accept", better="b")), project=P)
    with pytest.raises(DataError, match="no records"):
        annotation.annotate_data(platform, base.ref, review(Decision(index=0, action="reject"),
                                                            Decision(index=1, action="reject")), project=P)


def test_search_finds_records_by_text_with_their_indices(platform, tmp_path):
    base = imported(platform, tmp_path, [chat(i) for i in range(30)])
    page = annotation.search_records(platform, base.ref, project=P, query="WHAT IS 1", limit=5)
    assert (page["total"], page["matched"], page["format"]) == (30, 11, "messages")  # 1, 10..19
    assert [r["index"] for r in page["records"]] == [1, 10, 11, 12, 13]
    rest = annotation.search_records(platform, base.ref, project=P, query="what is 1", offset=10, limit=5)
    assert [r["index"] for r in rest["records"]] == [19]
