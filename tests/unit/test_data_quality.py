"""Personal-data detectors, duplicates, cleaning and the quality report, on generated records."""

from __future__ import annotations

import json
import random

import pytest

from tuneforge.data.clean import CleanSteps, clean_records
from tuneforge.data.dedup import exact_clusters, leaked_pairs, near_clusters
from tuneforge.data.pii import find_pii, redact
from tuneforge.data.quality import ReportOptions, build_report
from tuneforge.data.quality_render import write_report
from tuneforge.errors import ConfigError

WORDS = ("account billing refund password order shipping invoice delivery warranty screen battery laptop phone "
         "printer cable charger router update install error message support ticket weekend morning quickly").split()


def sentence(rng: random.Random, n: int = 30) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def chat(user: str, answer: str = "Sure, here is how.") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("write to jane.doe+ml@example.co.uk today", "EMAIL", "jane.doe+ml@example.co.uk"),
    ("call +1 415-555-0132 now", "PHONE", "+1 415-555-0132"),
    ("call (415) 555-0199 now", "PHONE", "(415) 555-0199"),
    ("card 4111 1111 1111 1111, exp 12/27", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004 ok", "CREDIT_CARD", "5500-0000-0000-0004"),
    ("host 10.20.30.40 is down", "IP_ADDRESS", "10.20.30.40"),
    ("host 2001:db8::8a2e:370:7334 is down", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("pay DE89 3704 0044 0532 0130 00 THANKS", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("pay GB82WEST12345698765432 today", "IBAN", "GB82WEST12345698765432"),
])
def test_each_detector_finds_its_kind_with_its_span(text, kind, value):
    spans = find_pii(text)
    assert [(s.type, text[s.start:s.end]) for s in spans] == [(kind, value)]
    assert redact(text, spans) == text.replace(value, f"<{kind}>")


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 fails the Luhn check",
    "pay DE89 3704 0044 0532 0130 01 fails mod 97",
    "pay GB82WEST12345698765433 fails mod 97",
    "version 1.2.3.4.5, 300.1.1.1, meeting at 10:30:00, order 12345678 on 2024-01-15",
    "an @ sign alone, user@localhost, and 555-12",
])
def test_checksums_and_formats_reject_look_alikes(text):
    assert find_pii(text) == []


def test_near_duplicates_are_found_and_unrelated_texts_are_not():
    rng = random.Random(0)
    texts = [sentence(rng) for _ in range(300)]
    planted = {}
    for k in range(40):  # edit one word (and the case) of an existing text
        source = rng.randrange(300)
        words = texts[source].split()
        words[rng.randrange(len(words))] = "completely"
        planted[len(texts)] = source
        texts.append(" ".join(words).upper() if k % 2 else " ".join(words))
    clusters = near_clusters(texts, threshold=0.7)
    found = {m: c[0] for c in clusters for m in c[1:]}
    recall = sum(1 for copy, source in planted.items() if found.get(copy) == source or found.get(source) == copy
                 or any(copy in c and source in c for c in clusters)) / len(planted)
    assert recall >= 0.95
    wrongly = [m for c in clusters for m in c if m < 300 and m not in planted.values()]
    assert len(wrongly) <= 2  # random sentences over a 28-word vocabulary rarely reach Jaccard 0.7
    assert exact_clusters(["A  b", "a b", "c"]) == [[0, 1]]
    with pytest.raises(ConfigError, match="threshold"):
        near_clusters(texts, threshold=1.5)


def test_leakage_pairs_exact_and_near():
    rng = random.Random(1)
    train = [sentence(rng) for _ in range(50)]
    test = [train[3], train[7] + " extra", sentence(rng)]
    assert leaked_pairs(test, train, threshold=0.8) == [(0, 3, "exact"), (1, 7, "near")]


def test_clean_records_what_it_removed_in_order():
    rng = random.Random(2)
    base = [chat(sentence(rng, 12)) for _ in range(6)]
    records = [*base, base[1], chat("   "), chat("hi", "ok"), chat(base[2]["messages"][0]["content"] + " x"),
               chat("mail me at bob@example.com " + sentence(rng, 12))]
    result = clean_records(records, steps=CleanSteps(dedup="near", threshold=0.7, redact_pii=True, min_tokens=3,
                                                     drop_empty=True))
    assert result.removed["empty"] == [7]
    assert result.removed["too_short"] == [8]
    assert result.removed["duplicate"] == [{"index": 6, "kept": 1}, {"index": 9, "kept": 2}]
    assert result.redacted == {"records": [10], "spans": {"EMAIL": 1}}
    assert result.records[-1]["messages"][0]["content"].startswith("mail me at <EMAIL> ")
    assert len(result.records) == 7 and records[10]["messages"][0]["content"].startswith("mail me at bob@")
    with pytest.raises(ConfigError, match="min_tokens"):
        clean_records(records, steps=CleanSteps(min_tokens=10, max_tokens=5))


def test_report_finds_each_planted_issue_and_writes_its_files(tmp_path):
    rng = random.Random(3)
    records = [chat(sentence(rng, 20)) for _ in range(30)]
    records += [records[0], chat(" "), chat("card 4111111111111111 " + sentence(rng, 20)),
                chat(sentence(rng, 600)), chat("Bonjour, je voudrais changer le mot de passe de mon compte.")]
    others = [records[5]]
    report = build_report(records, fmt="messages", others=others, options=ReportOptions(max_seq_length=1000))
    kinds = {issue["kind"]: issue["records"] for issue in report["issues"]}
    assert kinds["exact_duplicates"] == [30] and kinds["empty_fields"] == [31]
    assert kinds["personal_data"] == [32] and kinds["too_long"] == [33] and kinds["leakage"] == [5]
    finding = report["personal_data"]["findings"][0]
    assert (finding["record"], finding["field"], finding["type"]) == (32, "messages[0].content", "CREDIT_CARD")
    assert (finding["start"], finding["end"]) == (5, 21)
    assert report["languages"]["records"]["34"] == "fr" and report["languages"]["counts"]["en"] >= 30
    assert report["fields"]["roles"] == {"user": 35, "assistant": 35} and report["fields"]["turns"] == {"2": 35}
    assert 0 < report["score"] < 100
    clean = build_report(records[:30], fmt="messages")
    assert clean["issues"] == [] and clean["score"] == 100.0
    labels = build_report([{"text": "good", "label": "pos"}] * 3 + [{"text": "bad", "label": "neg"}],
                          fmt="classification")
    assert labels["labels"] == {"counts": {"pos": 3, "neg": 1}, "imbalance": 3.0}
    written = write_report(report, tmp_path / "rep")
    assert sorted(p.name for p in written) == ["report.json", "report.md", "tokens.png", "turns.png"]
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["score"] == report["score"]
    assert "leakage" in (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "tokens.png").read_bytes()[:4] == b"\x89PNG"
