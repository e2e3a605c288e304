"""A/B tests between registered versions: route a request of a split alias to one version, and report
(and act on) what the request log and the feedback say.

Routing (:func:`route`) runs at every request, so a new split, its end or a rollback changes what answers
the next request with no restart. The report compares each version of the split with its control (the
heaviest version) on independent requests: a bootstrap interval of the difference of means and a
permutation test (:mod:`tuneforge.evaluation.stats`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneforge.errors import ConfigError, ConflictError
from tuneforge.evaluation.stats import bootstrap_difference, permutation_test
from tuneforge.registry.models import LATEST, parse_ref
from tuneforge.registry.splits import assign_version
from tuneforge.services.platform import Platform
from tuneforge.services.registry import _store, resolve_model_version
from tuneforge.services.traffic import latest_feedback
from tuneforge.storage.base import Store
from tuneforge.storage.records import AliasMoveRecord, ModelVersionRecord, ServedRequestRecord

METRICS = {"score": "higher", "latency_ms": "lower"}  # what the report can compare, and which way is better


@dataclass(frozen=True)
class Route:
    """Which registered version answers a request, and through which alias."""

    version: ModelVersionRecord
    alias: str | None = None
    split: bool = False


def route(platform_or_store: Platform | Store, ref: str, *, project: str, user: str | None = None) -> Route | None:
    """The version that answers a request for ``ref``: for a split alias, the version the hash of ``user`` (or, with
    no user, a random key) falls on; otherwise what :func:`resolve_model_version` resolves. ``None`` when ``ref``
    is no registry reference.

    Raises:
        NotFoundError: See :func:`resolve_model_version`.
    """
    store = _store(platform_or_store)
    parsed = parse_ref(ref)
    if parsed is not None and parsed.alias is not None and parsed.alias != LATEST:
        alias = next((a for a in store.list_model_aliases(project=project, name=parsed.name)
                      if a.alias == parsed.alias), None)
        weights = alias.split() if alias is not None else None
        if weights:
            key = f"{parsed.name}@{parsed.alias}|{user if user is not None else uuid.uuid4().hex}"
            chosen = assign_version(weights, key=key)
            found = resolve_model_version(store, f"{parsed.name}:{chosen}", project=project)
            return Route(found, parsed.alias, split=True) if found is not None else None
    found = resolve_model_version(store, ref, project=project)
    return Route(found, parsed.alias if parsed else None) if found is not None else None


def last_split(store: Store, *, project: str, name: str, alias: str) -> AliasMoveRecord:
    """The newest split of ``name@alias`` (running or ended).

    Raises:
        NotFoundError: Unknown model.
        ConflictError: The alias was never split.
    """
    from tuneforge.services.registry import _require_model

    _require_model(store, name, project=project)
    splits = [m for m in store.list_alias_moves(project=project, name=name, alias=alias) if m.action == "split"]
    if not splits:
        raise ConflictError(f"alias '{alias}' of model '{name}' was never split",
                            hint=f"start an A/B test with 'tuneforge registry split {name} --alias {alias} "
                            "--to 7=0.9,8=0.1'")
    return splits[-1]


def ab_report(platform: Platform, name: str, *, project: str, alias: str = "production", metric: str = "score",
              since: float | None = None, confidence: float = 0.95, min_samples: int = 30, seed: int = 0,
              promote: bool = False, actor: str = "") -> dict[str, Any]:
    """Per version of the newest split of ``name@alias``: requests, latency p50/p95, feedback rate and mean score;
    each version against the control on ``metric`` (difference of means, its bootstrap interval, a permutation
    test) and a verdict. With ``promote``, the alias moves to the winner (ending the split) when there is one.

    Args:
        metric: ``score`` (feedback; higher is better) or ``latency_ms`` (lower is better).
        since: Requests from this Unix time (default: since the split started).
        min_samples: Fewest values per version for a verdict.

    Raises:
        ConfigError: An unknown metric.
        NotFoundError: Unknown model; ConflictError: the alias was never split.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}", field="metric", hint=f"use one of {', '.join(METRICS)}")
    split = last_split(platform.store, project=project, name=name, alias=alias)
    start = split.created_at if since is None else since
    requests = platform.store.list_served_requests(project=project, name=name, alias=alias, since=start)
    notes = latest_feedback(platform.store.list_feedback(project=project, name=name, since=start))
    weights, control = split.split() or {}, split.to_version
    groups = {v: [r for r in requests if r.version == v] for v in sorted(weights)}
    values = {v: _values(group, notes, metric) for v, group in groups.items()}
    comparisons = [_compare(values[control], values[v], version=v, metric=metric, confidence=confidence,
                            min_samples=min_samples, seed=seed) for v in groups if v != control]
    verdict = _verdict(comparisons, control=control, metric=metric)
    report = {"name": name, "alias": alias, "metric": metric, "control": control,
              "weights": {str(v): w for v, w in weights.items()}, "since": start, "split_active": _active(
                  platform.store, project=project, name=name, alias=alias, split=split),
              "variants": [_variant(v, groups[v], notes, weight=weights[v]) for v in groups],
              "comparisons": comparisons, "verdict": verdict, "promoted": None}
    if promote and verdict["winner"] is not None:
        from tuneforge.services.registry import set_split

        move = set_split(platform.store, project=project, name=name, alias=alias, weights={verdict["winner"]: 1.0},
                         actor=actor)
        report["promoted"] = f"{name}:{move.to_version}"
    return report


def _active(store: Store, *, project: str, name: str, alias: str, split: AliasMoveRecord) -> bool:
    moves = store.list_alias_moves(project=project, name=name, alias=alias)
    return bool(moves) and moves[-1].seq == split.seq


def _values(group: list[ServedRequestRecord], notes: dict[str, Any], metric: str) -> list[float]:
    if metric == "latency_ms":
        return [r.latency_ms for r in group if r.status == "ok"]
    return [notes[r.id].score for r in group if r.id in notes]


def _variant(version: int, group: list[ServedRequestRecord], notes: dict[str, Any], *, weight: float) -> dict:
    latencies = [r.latency_ms for r in group if r.status == "ok"]
    scores = [notes[r.id].score for r in group if r.id in notes]
    p50, p95 = np.percentile(latencies, [50, 95]).tolist() if latencies else (None, None)
    return {"version": version, "weight": weight, "requests": len(group),
            "errors": sum(r.status == "error" for r in group), "latency_p50_ms": p50, "latency_p95_ms": p95,
            "users": len({r.user_id for r in group if r.user_id}), "feedback": len(scores),
            "feedback_rate": len(scores) / len(group) if group else 0.0,
            "mean_score": float(np.mean(scores)) if scores else None,
            "prompt_tokens": sum(r.prompt_tokens for r in group),
            "completion_tokens": sum(r.completion_tokens for r in group)}


def _compare(control: list[float], candidate: list[float], *, version: int, metric: str, confidence: float,
             min_samples: int, seed: int) -> dict[str, Any]:
    """``candidate - control`` on ``metric``: the interval, the p-value, and whether it is a significant gain."""
    out: dict[str, Any] = {"version": version, "n_control": len(control), "n_version": len(candidate)}
    if min(len(control), len(candidate)) < max(min_samples, 1):
        return {**out, "difference": None, "low": None, "high": None, "p_value": None, "outcome": "too few samples"}
    interval = bootstrap_difference(control, candidate, confidence=confidence, seed=seed)
    p_value = permutation_test(control, candidate, seed=seed)
    significant = interval.significant and p_value < 1 - confidence
    gain = interval.difference > 0 if METRICS[metric] == "higher" else interval.difference < 0
    outcome = ("better" if gain else "worse") if significant else "no significant difference"
    return {**out, "difference": interval.difference, "low": interval.low, "high": interval.high,
            "confidence": confidence, "p_value": p_value, "outcome": outcome}


def _verdict(comparisons: list[dict[str, Any]], *, control: int, metric: str) -> dict[str, Any]:
    better = [c for c in comparisons if c["outcome"] == "better"]
    if better:
        sign = 1 if METRICS[metric] == "higher" else -1
        best = max(better, key=lambda c: sign * c["difference"])
        return {"winner": best["version"], "decision": "promote",
                "reason": f"version {best['version']} beats the control (version {control}) on {metric}"}
    if comparisons and all(c["outcome"] == "worse" for c in comparisons):
        return {"winner": control, "decision": "keep control",
                "reason": f"every other version is worse than the control (version {control}) on {metric}"}
    short = [c for c in comparisons if c["outcome"] == "too few samples"]
    reason = (f"too few {metric} values ({', '.join(str(min(c['n_control'], c['n_version'])) for c in short)})"
              if short else f"no significant difference on {metric}")
    return {"winner": None, "decision": "inconclusive", "reason": reason}
