"""The A/B split and served-traffic part of the Store contract (request log, feedback), against SQLite and
a real PostgreSQL."""

from __future__ import annotations

import pytest

from fixtures.platform import add_model_versions
from tuneforge.errors import ConflictError, NotFoundError
from tuneforge.storage.records import FeedbackRecord, ServedRequestRecord, now
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def served(request_id, *, project="p1", version=1, created_at=None, **fields):
    return ServedRequestRecord(id=request_id, project=project, model="bot@production", variant=f"bot:{version}",
                               name="bot", alias="production", version=version, user_id="u1", latency_ms=12.5,
                               prompt_tokens=7, completion_tokens=3, created_at=created_at or now(), **fields)


def test_a_split_is_an_alias_move_and_a_plain_move_ends_it(store):
    add_model_versions(store, 3, project="p1")
    store.move_model_alias(project="p1", name="bot", alias="production", version=1, actor="alice")
    split = store.split_model_alias(project="p1", name="bot", alias="production", weights={1: 0.9, 2: 0.1},
                                    actor="bob")
    assert (split.from_version, split.to_version, split.action, split.split()) == (1, 1, "split", {1: 0.9, 2: 0.1})
    alias = store.list_model_aliases(project="p1", name="bot")[0]
    assert alias.version == 1 and alias.split() == {1: 0.9, 2: 0.1}  # the heaviest version is the control
    store.split_model_alias(project="p1", name="bot", alias="production", weights={2: 0.5, 3: 0.5}, actor="bob")
    assert store.list_model_aliases(project="p1", name="bot")[0].version == 2  # a tie: the lower version
    ended = store.move_model_alias(project="p1", name="bot", alias="production", version=3, actor="bob")
    assert ended.weights is None and store.list_model_aliases(project="p1", name="bot")[0].split() is None
    moves = store.list_alias_moves(project="p1", name="bot", alias="production")
    assert [m.action for m in moves] == ["set", "split", "split", "set"]
    assert moves[1].split() == {1: 0.9, 2: 0.1}  # the history keeps each split's weights
    back = store.rollback_model_alias(project="p1", name="bot", alias="production", actor="bob")
    assert back.to_version == 2 and store.list_model_aliases(project="p1", name="bot")[0].weights is None
    with pytest.raises(NotFoundError):
        store.split_model_alias(project="p1", name="bot", alias="production", weights={1: 0.5, 9: 0.5}, actor="x")
    store.split_model_alias(project="p1", name="bot", alias="canary", weights={2: 0.8, 3: 0.2}, actor="x")
    with pytest.raises(ConflictError, match="canary"):  # a version a split serves is kept
        store.update_model_version(project="p1", name="bot", version=3, pruned_at=now())
    store.update_model_version(project="p1", name="bot", version=1, pruned_at=now())
    with pytest.raises(ConflictError):
        store.split_model_alias(project="p1", name="bot", alias="production", weights={1: 0.5, 3: 0.5}, actor="x")


def test_request_log_and_feedback_stay_in_their_project(store):
    start = now()
    store.add_served_requests([served("chatcmpl-1", created_at=start - 100), served("chatcmpl-2", version=2),
                               served("chatcmpl-3", project="p2", prompt={"messages": [{"role": "user",
                                                                                       "content": "hi"}]},
                                      answer="hello")])
    store.add_served_requests([])
    got = store.get_served_request("chatcmpl-3", project="p2")
    assert got.prompt == {"messages": [{"role": "user", "content": "hi"}]} and got.answer == "hello"
    assert got.latency_ms == 12.5 and (got.prompt_tokens, got.completion_tokens) == (7, 3)
    with pytest.raises(NotFoundError):
        store.get_served_request("chatcmpl-3", project="p1")
    assert [r.id for r in store.list_served_requests(project="p1", name="bot")] == ["chatcmpl-1", "chatcmpl-2"]
    assert [r.id for r in store.list_served_requests(project="p1", name="bot", since=start)] == ["chatcmpl-2"]
    assert store.list_served_requests(project="p1", alias="staging") == []
    store.add_feedback(FeedbackRecord(request_id="chatcmpl-1", project="p1", score=1.0, label="up"))
    store.add_feedback(FeedbackRecord(request_id="chatcmpl-2", project="p1", score=0.0, label="down",
                                      correction="better"))
    with pytest.raises(NotFoundError):  # another project's response
        store.add_feedback(FeedbackRecord(request_id="chatcmpl-3", project="p1", score=1.0))
    with pytest.raises(NotFoundError):
        store.add_feedback(FeedbackRecord(request_id="chatcmpl-404", project="p1", score=1.0))
    notes = store.list_feedback(project="p1", name="bot")
    assert [(f.request_id, f.score, f.label, f.correction) for f in notes] == [
        ("chatcmpl-1", 1.0, "up", None), ("chatcmpl-2", 0.0, "down", "better")]
    assert [f.request_id for f in store.list_feedback(project="p1", since=start)] == ["chatcmpl-2"]
    assert store.list_feedback(project="p2") == []
