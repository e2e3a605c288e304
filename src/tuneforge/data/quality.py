"""The quality report of a list of records: counts, fields, token lengths, labels, languages, duplicates,
leakage against another set, personal data, and a score with the issues behind it.

Every finding names its record (0-based index in the version) and, where it has one, its field
(``messages[1].content``) and span. :mod:`tuneforge.data.quality_render` writes it as JSON, Markdown and
PNG histograms.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from tuneforge.data.clean import has_empty_field
from tuneforge.data.dedup import exact_clusters, leaked_pairs, near_clusters, removed_by_dedup
from tuneforge.data.fields import TokenCounter, estimate_tokens, record_text, record_tokens, text_fields
from tuneforge.data.pii import PII_TYPES, find_pii, mask
from tuneforge.errors import MissingDependencyError

ESTIMATE = "estimate: about 4 characters per token (no --model given)"
# How much each kind of issue lowers the score, per fraction of records it touches (score = 100 * prod(1 - w*f)).
WEIGHTS = {"leakage": 1.0, "empty_fields": 0.8, "exact_duplicates": 0.5, "personal_data": 0.5,
           "near_duplicates": 0.3, "too_long": 0.3}


@dataclass(frozen=True)
class ReportOptions:
    """What the report measures against.

    Attributes:
        max_seq_length: Records longer than this (in tokens) would be truncated in training.
        threshold: Jaccard similarity from which two records are near duplicates.
        language_limit: Records whose language is detected (a seeded sample beyond it: langdetect takes
            about 1 ms a record).
        seed: Seeds langdetect and the language sample.
        pii_types: Kinds of personal data to look for.
    """

    max_seq_length: int = 2048
    threshold: float = 0.8
    language_limit: int = 5000
    seed: int = 0
    pii_types: tuple[str, ...] = PII_TYPES


def build_report(records: list[dict[str, Any]], *, fmt: str, options: ReportOptions = ReportOptions(),
                 count_tokens: TokenCounter = estimate_tokens, tokenizer: str = ESTIMATE,
                 others: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The quality report of ``records`` (of format ``fmt``); ``others`` (a test set) adds a leakage check.

    Returns:
        The report as JSON-ready data: sections ``summary``, ``fields``, ``tokens``, ``labels``,
        ``languages``, ``duplicates``, ``leakage``, ``personal_data``, then ``issues`` and ``score``.
    """
    texts = [record_text(r) for r in records]
    report: dict[str, Any] = {
        "summary": {"records": len(records), "format": fmt, "tokenizer": tokenizer},
        "fields": _fields(records),
        "tokens": _tokens(records, count_tokens, options.max_seq_length),
        "labels": _labels(records) if fmt == "classification" else None,
        "languages": _languages(texts, options),
        "duplicates": _duplicates(texts, options.threshold),
        "leakage": _leakage(texts, others, options.threshold),
        "personal_data": _personal_data(records, options.pii_types),
    }
    report["issues"] = _issues(report)
    report["score"] = _score(report["issues"], len(records))
    return report


def _fields(records: list[dict[str, Any]]) -> dict[str, Any]:
    roles: Counter[str] = Counter()
    turns: Counter[int] = Counter()
    empty = []
    for index, record in enumerate(records):
        messages = record.get("messages")
        if isinstance(messages, list):
            roles.update(str(m.get("role")) for m in messages if isinstance(m, dict))
            turns[len(messages)] += 1
        empty.extend({"record": index, "field": path} for path, text in text_fields(record) if not text.strip())
        if not any(True for _ in text_fields(record)):
            empty.append({"record": index, "field": None})
    keys: Counter[str] = Counter(key for record in records for key in record)
    return {"keys": dict(keys.most_common()), "roles": dict(roles.most_common()),
            "turns": {str(k): v for k, v in sorted(turns.items())}, "empty": empty}


def _tokens(records: list[dict[str, Any]], count: TokenCounter, max_seq_length: int) -> dict[str, Any]:
    lengths = [record_tokens(r, count) for r in records]
    ordered = sorted(lengths)
    over = [i for i, n in enumerate(lengths) if n > max_seq_length]
    return {
        "total": sum(lengths), "min": ordered[0], "max": ordered[-1], "mean": round(statistics.fmean(lengths), 2),
        "p50": ordered[len(ordered) // 2], "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max_seq_length": max_seq_length, "over_max_seq_length": {"count": len(over), "records": over},
        "histogram": _histogram(lengths),
    }


def _histogram(values: list[int], bins: int = 20) -> dict[str, list[float]]:
    import numpy as np

    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [round(float(e), 2) for e in edges], "counts": [int(c) for c in counts]}


def _labels(records: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(str(r.get("label")) for r in records)
    most, least = max(counts.values()), min(counts.values())
    return {"counts": dict(counts.most_common()), "imbalance": round(most / least, 2)}


def _languages(texts: list[str], options: ReportOptions) -> dict[str, Any]:
    detect = _language_detector(options.seed)
    chosen = range(len(texts))
    if len(texts) > options.language_limit:
        chosen = sorted(random.Random(options.seed).sample(range(len(texts)), options.language_limit))
    per_record = {index: detect(texts[index]) for index in chosen}
    counts = Counter(per_record.values())
    return {"detected": len(per_record), "sampled": len(per_record) < len(texts), "seed": options.seed,
            "counts": dict(counts.most_common()), "records": {str(i): lang for i, lang in per_record.items()}}


def _language_detector(seed: int) -> Callable[[str], str]:
    """langdetect on the first 300 characters, 3 trials (its default 7 takes 15 ms on text of no language),
    seeded; ``unknown`` below 60% confidence or without letters."""
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        raise MissingDependencyError("langdetect", extra="data", purpose="detecting languages") from None
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(seed)

    def detect(text: str) -> str:
        detector = factory.create()
        detector.n_trial = 3
        detector.set_max_text_length(300)
        detector.append(text)
        try:
            best = detector.get_probabilities()[0]
        except (LangDetectException, IndexError):
            return "unknown"
        return best.lang if best.prob >= 0.6 else "unknown"

    return detect


def _duplicates(texts: list[str], threshold: float) -> dict[str, Any]:
    exact = exact_clusters(texts)
    firsts = sorted(set(range(len(texts))) - set(removed_by_dedup(exact)))
    near = [[firsts[i] for i in cluster] for cluster in near_clusters([texts[i] for i in firsts], threshold=threshold)]
    return {"threshold": threshold, "exact_clusters": exact, "near_clusters": near,
            "exact_removable": len(removed_by_dedup(exact)), "near_removable": len(removed_by_dedup(near))}


def _leakage(texts: list[str], others: list[dict[str, Any]] | None, threshold: float) -> dict[str, Any] | None:
    if others is None:
        return None
    pairs = leaked_pairs(texts, [record_text(r) for r in others], threshold=threshold)
    return {"pairs": [{"record": i, "other_record": j, "kind": kind} for i, j, kind in pairs],
            "records": len(pairs)}


def _personal_data(records: list[dict[str, Any]], types: tuple[str, ...]) -> dict[str, Any]:
    findings = []
    for index, record in enumerate(records):
        for path, text in text_fields(record):
            findings.extend({"record": index, "field": path, "type": span.type, "start": span.start,
                             "end": span.end, "preview": mask(text[span.start:span.end])}
                            for span in find_pii(text, types=types))
    return {"counts": dict(Counter(f["type"] for f in findings).most_common()), "findings": findings,
            "names": "not detected: Presidio and scrubadub need spaCy/TextBlob models that cannot be installed "
                     "offline"}


def _issues(report: dict[str, Any]) -> list[dict[str, Any]]:
    dup, tokens = report["duplicates"], report["tokens"]
    candidates = [
        ("exact_duplicates", "warning", "exact duplicate records (all but the first of each cluster)",
         removed_by_dedup(dup["exact_clusters"])),
        ("near_duplicates", "warning", f"near duplicates (Jaccard >= {dup['threshold']})",
         removed_by_dedup(dup["near_clusters"])),
        ("empty_fields", "error", "records with an empty or white-space-only field",
         sorted({e["record"] for e in report["fields"]["empty"]})),
        ("too_long", "warning", f"records over max_seq_length ({tokens['max_seq_length']} tokens) would be truncated",
         tokens["over_max_seq_length"]["records"]),
        ("personal_data", "warning", "records with personal data (" + ", ".join(report["personal_data"]["counts"]) + ")",
         sorted({f["record"] for f in report["personal_data"]["findings"]})),
        ("leakage", "error", "records that also occur in the other version (train/test leakage)",
         [p["record"] for p in (report["leakage"] or {}).get("pairs", [])]),
    ]
    return [{"kind": kind, "severity": severity, "message": f"{len(records)} {message}", "records": records}
            for kind, severity, message, records in candidates if records]


def _score(issues: list[dict[str, Any]], total: int) -> float:
    score = 100.0
    for issue in issues:
        score *= 1 - WEIGHTS[issue["kind"]] * len(issue["records"]) / max(total, 1)
    return round(score, 1)
