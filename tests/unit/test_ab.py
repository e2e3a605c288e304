"""A/B splits: weights, sticky assignment within a binomial tolerance, routing, the report's verdict and
--promote, and the records 'data collect --from-traffic' makes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fixtures.platform import add_model_versions, temp_platform
from tuneforge.errors import ConfigError, ConflictError
from tuneforge.registry.splits import assign_version, check_weights, parse_weights
from tuneforge.storage.records import FeedbackRecord, ServedRequestRecord, now


def test_weights_parse_and_bad_ones_name_the_problem():
    assert parse_weights("7=0.9, 8=0.1") == {7: 0.9, 8: 0.1}
    assert check_weights({8: 1.0, 7: 0}) == {8: 1.0}
    for text, words in (("7=0.9,8=0.2", "sum to 1.1"), ("7=0.9,eight=0.1", "'eight=0.1'"), ("7", "'7'"),
                        ("0=0.5,1=0.5", "version 0"), ("99999999999999999999=1", r"1 to 2\^31-1"),
                        ("7=nan", "weight nan")):
        with pytest.raises(ConfigError, match=words):
            parse_weights(text)


def test_assignment_is_sticky_and_follows_the_weights_over_1000_users():
    weights = {7: 0.9, 8: 0.1}
    users = [f"user-{i}" for i in range(1000)]
    first = [assign_version(weights, key=f"bot@production|{u}") for u in users]
    assert first == [assign_version(weights, key=f"bot@production|{u}") for u in users]  # sticky
    share = first.count(8)
    assert abs(share - 100) <= 4 * math.sqrt(1000 * 0.1 * 0.9)  # binomial: within 4 standard deviations
    other_alias = [assign_version(weights, key=f"bot@staging|{u}") for u in users]
    assert other_alias != first  # each alias hashes on its own
    three = [assign_version({1: 0.2, 2: 0.3, 3: 0.5}, key=f"m@a|{u}") for u in users]
    for version, weight in ((1, 0.2), (2, 0.3), (3, 0.5)):
        assert abs(three.count(version) - 1000 * weight) <= 4 * math.sqrt(1000 * weight * (1 - weight))


@pytest.fixture
def platform(tmp_path):
    with temp_platform(tmp_path / "home") as opened:
        add_model_versions(opened.store, 3)
        yield opened


def test_routing_follows_a_split_and_its_end(platform):
    from tuneforge.services.ab import route
    from tuneforge.services.registry import set_alias, set_split

    set_alias(platform, "bot", 1, "production", project="acme", actor="t")
    assert route(platform, "bot@production", project="acme", user="u").version.version == 1
    set_split(platform, project="acme", name="bot", alias="production", weights={1: 0.5, 2: 0.5}, actor="t")
    users = {u: route(platform, "bot@production", project="acme", user=u).version.version for u in map(str, range(40))}
    assert set(users.values()) == {1, 2} and all(route(platform, "bot@production", project="acme", user=u).split
                                                  and route(platform, "bot@production", project="acme",
                                                            user=u).version.version == v for u, v in users.items())
    anonymous = {route(platform, "bot@production", project="acme").version.version for _ in range(40)}
    assert anonymous == {1, 2}  # no user: assigned per request
    assert route(platform, "bot:3", project="acme").version.version == 3 and route(platform, "x/y", project="acme") is None
    set_split(platform, project="acme", name="bot", alias="production", weights={2: 1.0}, actor="t")  # ends it
    assert {route(platform, "bot@production", project="acme", user=u).version.version for u in users} == {2}
    with pytest.raises(ConfigError, match="sum"):
        set_split(platform, project="acme", name="bot", alias="production", weights={1: 0.5}, actor="t")


def log_traffic(store, *, scores: dict[int, list[float]], batch: str) -> None:
    requests, notes = [], []
    for version, values in scores.items():
        for i, value in enumerate(values):
            rid = f"chatcmpl-{batch}-{version}-{i}"
            requests.append(ServedRequestRecord(id=rid, project="acme", model="bot@production", variant=f"bot:{version}",
                                                name="bot", alias="production", version=version, user_id=f"u{i}",
                                                latency_ms=10.0 + version + i % 5, prompt_tokens=5, completion_tokens=2))
            notes.append(FeedbackRecord(request_id=rid, project="acme", score=value))
    store.add_served_requests(requests)
    for note in notes:
        store.add_feedback(note)


def test_report_verdict_and_promote_only_with_a_winner(platform):
    from tuneforge.services.ab import ab_report
    from tuneforge.services.registry import set_alias, set_split

    set_alias(platform, "bot", 1, "production", project="acme", actor="t")
    with pytest.raises(ConflictError, match="never split"):
        ab_report(platform, "bot", project="acme")
    set_split(platform, project="acme", name="bot", alias="production", weights={1: 0.7, 2: 0.3}, actor="t")
    rng = np.random.default_rng(0)
    log_traffic(platform.store, scores={1: (rng.random(10) < 0.5).astype(float).tolist(),
                                        2: (rng.random(10) < 0.9).astype(float).tolist()}, batch="a")
    few = ab_report(platform, "bot", project="acme", promote=True)
    assert few["verdict"]["decision"] == "inconclusive" and few["promoted"] is None  # 10 < min_samples
    assert platform.store.list_model_aliases(project="acme", name="bot")[0].split() == {1: 0.7, 2: 0.3}
    log_traffic(platform.store, scores={1: (rng.random(200) < 0.4).astype(float).tolist(),
                                        2: (rng.random(200) < 0.8).astype(float).tolist()}, batch="b")
    report = ab_report(platform, "bot", project="acme", min_samples=30, promote=True)
    control, candidate = report["variants"]
    assert (control["version"], candidate["version"], report["control"]) == (1, 2, 1)
    assert control["requests"] == 210 and control["feedback_rate"] == 1.0 and control["latency_p95_ms"] >= 11
    comparison = report["comparisons"][0]
    assert comparison["difference"] == pytest.approx(candidate["mean_score"] - control["mean_score"])
    assert comparison["low"] > 0 and comparison["p_value"] < 0.05 and comparison["outcome"] == "better"
    assert report["verdict"]["winner"] == 2 and report["promoted"] == "bot:2"
    alias = platform.store.list_model_aliases(project="acme", name="bot")[0]
    assert (alias.version, alias.split()) == (2, None)  # promoted: the split ended on the winner
    after = ab_report(platform, "bot", project="acme", metric="latency_ms")  # the last split, still reportable
    assert not after["split_active"] and after["comparisons"][0]["outcome"] == "worse"  # version 2 is 1 ms slower


def test_corrections_become_chat_records_and_preference_pairs():
    from tuneforge.services.traffic import latest_feedback, parse_score, traffic_records

    ask = [{"role": "user", "content": "2+3?"}]
    logged = [ServedRequestRecord(id=f"r{i}", project="acme", model="bot", variant="bot:1", prompt={"messages": ask},
                                  answer=f"answer {i}") for i in range(4)]
    logged.append(ServedRequestRecord(id="r9", project="acme", model="bot", variant="bot:1", prompt=None, answer=None))
    notes = latest_feedback([FeedbackRecord("r0", "acme", 0.0, "down", "5"), FeedbackRecord("r1", "acme", 1.0, "up"),
                             FeedbackRecord("r2", "acme", 1.0, "up"), FeedbackRecord("r2", "acme", 0.0, "down"),
                             FeedbackRecord("r9", "acme", 0.0, "down", "no text logged")])
    chats, pairs = traffic_records(logged, notes)
    assert chats == [{"messages": [*ask, {"role": "assistant", "content": "5"}]}]
    assert pairs == [{"prompt": ask, "chosen": "5", "rejected": "answer 0"}]
    liked, _ = traffic_records(logged, notes, include_liked=True)  # r2's newest note is a thumbs down
    assert liked[1:] == [{"messages": [*ask, {"role": "assistant", "content": "answer 1"}]}]
    assert parse_score("up") == (1.0, "up") and parse_score("thumbs_down") == (0.0, "down") and parse_score(4) == (4.0, None)
    with pytest.raises(ConfigError, match="score"):
        parse_score("great")
    for poison in ("nan", "inf", float("inf"), "1e400"):  # would poison every mean of the A/B report
        with pytest.raises(ConfigError, match="finite"):
            parse_score(poison)
