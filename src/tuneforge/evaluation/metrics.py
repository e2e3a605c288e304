"""Metrics over predictions and references, and the table of metrics by task type.

Each metric turns the predictions of a model into **per-example statistics** and has an **aggregate** that
turns any subset of them into the score. A mean metric's statistic is the example's score; BLEU and chrF
keep sacrebleu's sufficient statistics, so a resampled corpus score is exact (the paired bootstrap of
:mod:`tuneforge.evaluation.stats` needs this). Scores are fractions in [0, 1], except BLEU and chrF, which
keep sacrebleu's 0-100 scale, and perplexity (lower is better).

Normalization:
    * ``exact_match``: :func:`normalize_answer` (strip, fold white space, drop one final period); case and
      inner punctuation count, since they are part of structured answers.
    * ``accuracy`` / ``macro_f1``: :func:`normalize_label` (``normalize_answer`` then case folding).
    * ``token_f1``: :func:`normalize_squad` (SQuAD: lower case, no punctuation, no articles), then the F1 of
      the bags of words.
    * BLEU and chrF: sacrebleu's defaults (13a tokenizer; chrF with character 6-grams, beta 2).
    * ROUGE: rouge-score's tokenizer (lower case, alphanumeric tokens) with the Porter stemmer; F-measure.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_SPACES = re.compile(r"\s+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Exact-match normalization: strip, fold runs of white space, drop one final period.

    Case and inner punctuation are kept: for structured outputs (key=value lines, JSON, labels) they
    are part of the answer.
    """
    text = _SPACES.sub(" ", text.strip())
    return text[:-1].rstrip() if text.endswith(".") else text


def normalize_label(text: str) -> str:
    """Label normalization for classification: :func:`normalize_answer`, then case folding."""
    return normalize_answer(text).casefold()


def normalize_squad(text: str) -> str:
    """SQuAD normalization for token F1: lower case, drop punctuation and articles, fold white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")


def exact_match(predictions: list[str], references: list[str]) -> list[int]:
    """Per-example exact match (1 or 0) after :func:`normalize_answer`."""
    _check(predictions, references)
    return [int(normalize_answer(p) == normalize_answer(r)) for p, r in zip(predictions, references)]


def label_accuracy(predictions: list[str], references: list[str]) -> list[int]:
    """Per-example label match (1 or 0) after :func:`normalize_label`."""
    _check(predictions, references)
    return [int(normalize_label(p) == normalize_label(r)) for p, r in zip(predictions, references)]


def token_f1(predictions: list[str], references: list[str]) -> list[float]:
    """Per-example SQuAD token F1 between the bags of normalized words (1.0 when both are empty)."""
    _check(predictions, references)
    scores = []
    for prediction, reference in zip(predictions, references):
        pred, ref = normalize_squad(prediction).split(), normalize_squad(reference).split()
        if not pred or not ref:
            scores.append(float(pred == ref))
            continue
        common = sum((Counter(pred) & Counter(ref)).values())
        precision, recall = common / len(pred), common / len(ref)
        scores.append(0.0 if common == 0 else 2 * precision * recall / (precision + recall))
    return scores


def label_pairs(predictions: list[str], references: list[str]) -> list[list[int]]:
    """Per-example ``[reference class, predicted class]`` ids; a prediction outside the labels is -1."""
    _check(predictions, references)
    labels = {label: i for i, label in enumerate(sorted({normalize_label(r) for r in references}))}
    return [[labels[normalize_label(r)], labels.get(normalize_label(p), -1)] for p, r in zip(predictions, references)]


def macro_f1_from_pairs(pairs: np.ndarray) -> float:
    """Macro-F1 over the classes that occur among the references of ``pairs`` (shape ``[n, 2]``).

    A prediction that is not one of the labels counts as a miss of the true class (as scikit-learn's
    ``f1_score(average="macro", labels=reference_labels)``).
    """
    pairs = np.asarray(pairs).reshape(-1, 2)
    truth, predicted = pairs[:, 0], pairs[:, 1]
    scores = []
    for label in np.unique(truth):
        tp = np.sum((truth == label) & (predicted == label))
        fp = np.sum((truth != label) & (predicted == label))
        fn = np.sum((truth == label) & (predicted != label))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def macro_f1(predictions: list[str], references: list[str]) -> float:
    """Macro-F1 of predicted labels over the reference labels (see :func:`macro_f1_from_pairs`)."""
    return macro_f1_from_pairs(np.array(label_pairs(predictions, references)))


@functools.cache
def _sacrebleu_scorer(name: str) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU() if name == "bleu" else CHRF()


def sacrebleu_stats(name: str) -> tuple[Callable[..., list], Callable[[np.ndarray], float]]:
    """Per-sentence sufficient statistics and their corpus score for sacrebleu's ``bleu`` or ``chrf``.

    sacrebleu is imported on first use, so that importing this module stays light.
    """

    def score(predictions: list[str], references: list[str]) -> list[list[int]]:
        _check(predictions, references)
        stats = _sacrebleu_scorer(name)._extract_corpus_statistics(predictions, [references])
        return [list(map(int, s)) for s in stats]

    def aggregate(stats: np.ndarray) -> float:
        totals = np.asarray(stats).sum(axis=0)
        return float(_sacrebleu_scorer(name)._compute_score_from_stats([int(t) for t in totals]).score)

    return score, aggregate


def rouge(predictions: list[str], references: list[str], kind: str = "rougeL") -> list[float]:
    """Per-example ROUGE F-measure (``rouge1``, ``rouge2`` or ``rougeL``) with the Porter stemmer."""
    from rouge_score.rouge_scorer import RougeScorer

    _check(predictions, references)
    scorer = RougeScorer([kind], use_stemmer=True)
    return [scorer.score(r, p)[kind].fmeasure for p, r in zip(predictions, references)]


def perplexity_from_stats(stats: np.ndarray) -> float:
    """``exp(total negative log-likelihood / total tokens)`` from per-example ``[nll, tokens]`` rows."""
    stats = np.asarray(stats, dtype=float).reshape(-1, 2)
    tokens = stats[:, 1].sum()
    return float(np.exp(stats[:, 0].sum() / tokens)) if tokens else float("nan")


def _mean(stats: np.ndarray) -> float:
    return float(np.mean(stats))


@dataclass(frozen=True)
class Metric:
    """A metric: how to score examples, how to aggregate them, and where it applies.

    Attributes:
        name: Name used in configs and on the command line.
        description: One line for ``--help`` and reports.
        task_types: Task types it fits.
        score: Predictions and references to per-example statistics; ``None`` for perplexity, which the
            runner computes from the model's likelihood of the references.
        aggregate: Statistics of any subset of examples (a numpy array) to the score.
        higher_is_better: False for perplexity.
        binary: Per-example 0/1 correctness (McNemar's test applies).
    """

    name: str
    description: str
    task_types: tuple[str, ...]
    score: Callable[[list[str], list[str]], list[Any]] | None
    aggregate: Callable[[np.ndarray], float]
    higher_is_better: bool = True
    binary: bool = False


def _build_metrics() -> dict[str, Metric]:
    refs = ("generation", "qa", "classification")
    bleu_score, bleu_aggregate = sacrebleu_stats("bleu")
    chrf_score, chrf_aggregate = sacrebleu_stats("chrf")
    metrics = [
        Metric("exact_match", "answer equals the reference after normalize_answer", refs, exact_match, _mean,
               binary=True),
        Metric("accuracy", "label equals the reference label (case-folded)", ("classification",), label_accuracy,
               _mean, binary=True),
        Metric("macro_f1", "F1 per reference label, averaged", ("classification",), label_pairs, macro_f1_from_pairs),
        Metric("token_f1", "SQuAD token F1 (bag of normalized words)", ("generation", "qa"), token_f1, _mean),
        Metric("bleu", "corpus BLEU, sacrebleu (0-100)", ("generation", "qa"), bleu_score, bleu_aggregate),
        Metric("chrf", "corpus chrF, sacrebleu (0-100)", ("generation", "qa"), chrf_score, chrf_aggregate),
        *(Metric(kind, f"{kind[:5].upper()}-{kind[5:]} F-measure, rouge-score with stemming", ("generation", "qa"),
                 lambda p, r, kind=kind: rouge(p, r, kind), _mean) for kind in ("rouge1", "rouge2", "rougeL")),
        Metric("perplexity", "exp of the mean token NLL of the references (lower is better)",
               (*refs, "language_modeling"), None, perplexity_from_stats, higher_is_better=False),
    ]
    return {m.name: m for m in metrics}


METRICS: dict[str, Metric] = _build_metrics()
DEFAULT_METRICS: dict[str, list[str]] = {
    "generation": ["exact_match", "token_f1", "chrf", "bleu", "rougeL"],
    "qa": ["exact_match", "token_f1"],
    "classification": ["accuracy", "macro_f1"],
    "language_modeling": ["perplexity"],
}


def task_type_for_format(fmt: str) -> str:
    """The default task type of a data format: labels are classification, raw text is language modeling,
    context/question/answer records are QA, every other chat-like format is generation."""
    return {"classification": "classification", "text": "language_modeling", "qa": "qa"}.get(fmt, "generation")
