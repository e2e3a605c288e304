"""Each metric against hand-computed values on small fixed inputs, and against its reference library."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tuneforge.evaluation.metrics import (
    DEFAULT_METRICS,
    METRICS,
    exact_match,
    label_accuracy,
    macro_f1,
    normalize_answer,
    normalize_squad,
    perplexity_from_stats,
    rouge,
    task_type_for_format,
    token_f1,
)


def corpus(name: str, predictions: list[str], references: list[str]) -> float:
    """A metric's score over a whole set, as the runner computes it."""
    metric = METRICS[name]
    return metric.aggregate(np.asarray(metric.score(predictions, references), dtype=float))


def test_normalize_answer_folds_space_and_one_final_period_but_keeps_case():
    assert normalize_answer("  name=Ana;\n age=3 .") == "name=Ana; age=3"
    assert normalize_answer("Paris..") == "Paris."
    assert normalize_answer("Paris") != normalize_answer("paris")


def test_exact_match_per_example():
    assert exact_match(["42", " 42. ", "41", "Yes"], ["42", "42", "42", "yes"]) == [1, 1, 0, 0]
    assert corpus("exact_match", ["a", "b", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    with pytest.raises(ValueError, match="3 predictions for 2 references"):
        exact_match(["a", "b", "c"], ["a", "b"])


def test_accuracy_folds_case_of_labels():
    assert label_accuracy(["Positive", "negative.", "neutral"], ["positive", "Negative", "negative"]) == [1, 1, 0]


def test_macro_f1_by_hand():
    # class a: tp 1, fp 0, fn 1 -> 2/3; b: tp 2, fp 1, fn 0 -> 4/5; c: tp 0, fn 1 -> 0; 'x' is no label.
    predictions, references = ["a", "b", "b", "b", "x"], ["a", "a", "b", "b", "c"]
    assert macro_f1(predictions, references) == pytest.approx((2 / 3 + 4 / 5 + 0) / 3)
    assert corpus("macro_f1", predictions, references) == pytest.approx((2 / 3 + 4 / 5) / 3)
    assert macro_f1(["A", "b"], ["a", "B"]) == 1.0


def test_macro_f1_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    references = list(rng.choice(["cat", "dog", "bird"], size=50))
    predictions = list(rng.choice(["cat", "dog", "bird", "fish"], size=50))
    expected = metrics.f1_score(references, predictions, average="macro", labels=["bird", "cat", "dog"])
    assert macro_f1(predictions, references) == pytest.approx(expected)


def test_token_f1_by_hand():
    assert normalize_squad("The Cat, sat!") == "cat sat"
    # [cat, sat] vs [cat, sat, down]: precision 1, recall 2/3 -> F1 0.8
    assert token_f1(["the cat sat", "dog", "", ""], ["a cat sat down", "cat", "", "x"]) == pytest.approx([0.8, 0, 1, 0])
    assert token_f1(["a a b"], ["a b b"]) == pytest.approx([2 / 3])  # bag overlap: min counts, a 1 + b 1


def test_bleu_by_hand_and_against_sacrebleu():
    import sacrebleu

    # All n-gram precisions are 1; hypothesis 6 words, reference 7: brevity penalty exp(1 - 7/6).
    assert corpus("bleu", ["the cat sat on the mat"], ["the cat sat on the mat today"]) == pytest.approx(
        100 * math.exp(1 - 7 / 6), abs=1e-6)
    assert corpus("bleu", ["a b c d"], ["a b c d"]) == pytest.approx(100)
    predictions = ["the cat sat on the mat", "a dog barked loudly at night", "hello world"]
    references = ["the cat sat on a mat", "the dog barked at night", "hello there world"]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    assert corpus("bleu", predictions, references) == pytest.approx(expected)


def test_chrf_by_hand_and_against_sacrebleu():
    import sacrebleu

    assert corpus("chrf", ["abc def"], ["abc def"]) == pytest.approx(100)
    assert corpus("chrf", ["xyz"], ["abc"]) == 0
    predictions = ["the cat sat on the mat", "name=Ana; age=3", "Lisbon"]
    references = ["the cat sat on a mat", "name=Ana; age=4", "Lisboa"]
    expected = sacrebleu.corpus_chrf(predictions, [references]).score
    assert corpus("chrf", predictions, references) == pytest.approx(expected)


def test_rouge_by_hand_and_against_rouge_score():
    from rouge_score.rouge_scorer import RougeScorer

    prediction, reference = "the cat is on the mat", "the cat sat on the mat"
    # unigrams: 5 of 6 shared; bigrams: the cat, on the, the mat = 3 of 5; LCS 'the cat on the mat' = 5 of 6.
    assert rouge([prediction], [reference], "rouge1") == pytest.approx([5 / 6])
    assert rouge([prediction], [reference], "rouge2") == pytest.approx([3 / 5])
    assert rouge([prediction], [reference], "rougeL") == pytest.approx([5 / 6])
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    pairs = [("cats running fast", "the cat runs fast"), ("completely different", "nothing shared here")]
    for kind in ("rouge1", "rouge2", "rougeL"):
        expected = np.mean([scorer.score(r, p)[kind].fmeasure for p, r in pairs])
        assert corpus(kind, [p for p, _ in pairs], [r for _, r in pairs]) == pytest.approx(expected)


def test_perplexity_from_stats_by_hand():
    # Two examples: NLL 2 ln 4 over 2 tokens, and ln 4 over 1 token: exp(3 ln 4 / 3) = 4.
    assert perplexity_from_stats(np.array([[2 * math.log(4), 2], [math.log(4), 1]])) == pytest.approx(4)
    assert math.isnan(perplexity_from_stats(np.array([[0.0, 0]])))
    assert not METRICS["perplexity"].higher_is_better


def test_defaults_fit_their_task_type_and_formats_map_to_types():
    for task_type, names in DEFAULT_METRICS.items():
        assert all(task_type in METRICS[name].task_types for name in names)
    assert task_type_for_format("classification") == "classification"
    assert task_type_for_format("text") == "language_modeling"
    assert task_type_for_format("alpaca") == "generation"
    assert task_type_for_format("qa") == "qa"
    assert {name for name, m in METRICS.items() if m.binary} == {"exact_match", "accuracy"}
