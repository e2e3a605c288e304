"""Paired bootstrap, McNemar, verdicts and the regression gate on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tuneforge.errors import ConfigError
from tuneforge.evaluation.compare import check_regressions, compare_reports, parse_max_drop
from tuneforge.evaluation.metrics import METRICS
from tuneforge.evaluation.results import EvalReport, ExampleResult, ModelFigures, TaskResult
from tuneforge.evaluation.stats import mcnemar_exact, paired_bootstrap


# --- McNemar -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("only_a", "only_b", "both", "expected"),
    [
        (0, 10, 5, 2 / 2**10),             # all 10 discordant pairs favour B: 2 * 0.5^10
        (2, 8, 0, 2 * (1 + 10 + 45) / 2**10),  # 2 * P(X <= 2), X ~ Bin(10, 1/2) = 0.109375
        (5, 5, 3, 1.0),                    # balanced: capped at 1
        (0, 0, 7, 1.0),                    # no discordant pair
        (1, 0, 0, 1.0),                    # 2 * 0.5 = 1
    ],
)
def test_mcnemar_exact_known_values(only_a, only_b, both, expected):
    a = [1] * only_a + [0] * only_b + [1] * both + [0, 0]
    b = [0] * only_a + [1] * only_b + [1] * both + [0, 0]
    result = mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.p_value == pytest.approx(expected, rel=1e-12)


def test_mcnemar_matches_scipy_binomial_test():
    stats = pytest.importorskip("scipy.stats")
    for only_a, only_b in [(3, 17), (40, 25), (12, 12), (0, 1), (60, 110)]:
        a, b = [1] * only_a + [0] * only_b, [0] * only_a + [1] * only_b
        expected = stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
        assert mcnemar_exact(a, b).p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_rejects_unpaired_or_non_binary_outcomes():
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([1, 0], [1])
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([1, 2], [1, 0])


# --- paired bootstrap ----------------------------------------------------------------------------------

def test_bootstrap_of_identical_models_is_exactly_zero():
    scores = np.random.default_rng(1).random(50)
    result = paired_bootstrap(scores, scores, seed=3)
    assert (result.difference, result.low, result.high) == (0, 0, 0) and not result.significant


def test_bootstrap_when_b_always_right_and_a_always_wrong():
    result = paired_bootstrap([0] * 30, [1] * 30)
    assert (result.difference, result.low, result.high) == (1, 1, 1) and result.significant


def test_bootstrap_interval_matches_normal_theory_for_a_mean():
    # B - A is 1 on 30% of 400 examples and 0 elsewhere: mean 0.3, standard error sqrt(.3 * .7 / 400).
    a = np.zeros(400)
    b = np.array([1.0] * 120 + [0.0] * 280)
    result = paired_bootstrap(a, b, resamples=4000, seed=0)
    half_width = 1.959964 * np.sqrt(0.3 * 0.7 / 400)
    assert result.difference == pytest.approx(0.3)
    assert result.low == pytest.approx(0.3 - half_width, abs=0.006)
    assert result.high == pytest.approx(0.3 + half_width, abs=0.006)


def test_bootstrap_matches_scipy_paired_percentile_interval():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    a, b = rng.random(200), rng.random(200) + 0.05
    ours = paired_bootstrap(a, b, resamples=5000, seed=1)
    theirs = stats.bootstrap((a, b), lambda x, y: np.mean(y) - np.mean(x), paired=True, n_resamples=5000,
                             method="percentile", random_state=2).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.01) and ours.high == pytest.approx(theirs.high, abs=0.01)


def test_bootstrap_same_seed_same_interval_and_corpus_aggregates():
    rng = np.random.default_rng(0)
    a, b = rng.random(40), rng.random(40)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(a, b, seed=5).low != paired_bootstrap(a, b, seed=6).low
    # A ratio of sums (like BLEU or perplexity): rows [numerator, denominator].
    num_den_a = np.column_stack([rng.integers(0, 5, 60), rng.integers(5, 10, 60)])
    num_den_b = num_den_a + np.column_stack([np.ones(60, dtype=int), np.zeros(60, dtype=int)])

    def ratio(rows: np.ndarray) -> float:
        return rows[:, 0].sum() / rows[:, 1].sum()

    result = paired_bootstrap(num_den_a, num_den_b, ratio, resamples=300)
    assert result.difference == pytest.approx(ratio(num_den_b) - ratio(num_den_a))
    assert 0 < result.low <= result.difference <= result.high


def test_bootstrap_needs_paired_examples():
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_bootstrap([1, 0], [1])


# --- verdicts and the regression gate --------------------------------------------------------------------

def task_result(name: str, stats: dict[str, list], sha: str = "d" * 64) -> TaskResult:
    n = len(next(iter(stats.values())))
    return TaskResult(
        name=name, data="test.jsonl", data_sha256=sha, format="messages", task_type="generation", examples=n,
        max_new_tokens=8, speed=None,
        metrics={m: METRICS[m].aggregate(np.asarray(v, dtype=float)) for m, v in stats.items()},
        per_example=[ExampleResult(line=i + 1, reference="r", prediction="p", stats={m: v[i] for m, v in stats.items()})
                     for i in range(n)],
    )


def report(model: str, *tasks: TaskResult) -> EvalReport:
    figures = ModelFigures(reference=model, base=model, adapter=None, parameters=1, adapter_parameters=0, disk_mb=1,
                           load_seconds=0, peak_memory_mb=1, memory="process RSS", device="cpu")
    return EvalReport(key="k", model=model, created_at="now", tuneforge_version="0", config={}, model_figures=figures,
                      tasks=list(tasks), seconds=0)


def test_compare_verdicts_follow_mcnemar_and_the_direction_of_better():
    right, wrong = [1] * 20, [0] * 20
    a = report("a", task_result("t", {"exact_match": wrong, "perplexity": [[2.0, 1]] * 20}))
    b = report("b", task_result("t", {"exact_match": right, "perplexity": [[1.0, 1]] * 20}))
    result = compare_reports(a, b, resamples=200)
    em, ppl = result.metrics
    assert result.verdict == "B better" and result.primary == "t/exact_match"
    assert (em.only_a, em.only_b, em.mcnemar_p) == (0, 20, pytest.approx(2 / 2**20))
    assert ppl.verdict == "B better" and ppl.difference < 0 and ppl.mcnemar_p is None  # lower perplexity wins
    assert compare_reports(b, a, resamples=200).verdict == "A better"
    assert compare_reports(a, a, resamples=200).verdict == "no significant difference"


def test_compare_four_of_five_wins_is_not_significant():
    a = report("a", task_result("t", {"exact_match": [0, 0, 0, 0, 1]}))
    b = report("b", task_result("t", {"exact_match": [1, 1, 1, 1, 0]}))
    em = compare_reports(a, b, resamples=200).metrics[0]
    assert em.mcnemar_p == pytest.approx(0.375) and em.verdict == "no significant difference"


def test_compare_refuses_different_data():
    a = report("a", task_result("t", {"exact_match": [1, 0]}, sha="1" * 64))
    b = report("b", task_result("t", {"exact_match": [1, 0]}, sha="2" * 64))
    with pytest.raises(ConfigError, match="different examples"):
        compare_reports(a, b)


def test_gate_fails_beyond_the_allowed_drop_and_passes_within_it():
    baseline = report("old", task_result("t", {"exact_match": [1, 1, 1, 1, 0], "perplexity": [[1.0, 1]] * 5}))
    worse = report("new", task_result("t", {"exact_match": [1, 1, 0, 0, 0], "perplexity": [[1.5, 1]] * 5}))
    found = check_regressions(worse, baseline, {"exact_match": 0.1})
    assert [(r.metric, r.drop) for r in found] == [("exact_match", pytest.approx(0.4))]
    assert "t/exact_match fell by 0.4 (0.8 -> 0.4), more than the allowed 0.1" == found[0].describe()
    assert check_regressions(worse, baseline, {"exact_match": 0.4}) == []  # exactly the allowed drop passes
    assert check_regressions(baseline, baseline, {"exact_match": 0.0}) == []
    (ppl,) = check_regressions(worse, baseline, {"perplexity": 0.5})  # e^1.5 - e^1: perplexity rose
    assert ppl.drop == pytest.approx(np.exp(1.5) - np.exp(1.0))
    better = report("new", task_result("t", {"exact_match": [1] * 5, "perplexity": [[0.5, 1]] * 5}))
    assert check_regressions(better, baseline, {"exact_match": 0, "perplexity": 0}) == []


def test_gate_refuses_other_data_missing_metrics_and_bad_limits():
    baseline = report("old", task_result("t", {"exact_match": [1, 0]}))
    with pytest.raises(ConfigError, match="other data"):
        check_regressions(report("new", task_result("t", {"exact_match": [1, 0]}, sha="e" * 64)), baseline, {})
    with pytest.raises(ConfigError, match="not in both"):
        check_regressions(report("new", task_result("t", {"exact_match": [1, 0]})), baseline, {"chrf": 1})
    with pytest.raises(ConfigError, match="none of the tasks"):
        check_regressions(report("new", task_result("u", {"exact_match": [1, 0]})), baseline, {})
    assert parse_max_drop(["exact_match=0.02", "chrf=1"]) == {"exact_match": 0.02, "chrf": 1.0}
    for bad in ("exact_match", "exact_match=-1", "exact_match=abc"):
        with pytest.raises(ConfigError, match="METRIC=VALUE"):
            parse_max_drop([bad])
    with pytest.raises(ConfigError, match="unknown metric 'exact'"):
        parse_max_drop(["exact=0.1"])


def test_unpaired_bootstrap_and_permutation_test_on_independent_groups():
    from tuneforge.evaluation.stats import bootstrap_difference, permutation_test

    rng = np.random.default_rng(3)
    a, b = rng.normal(0.0, 1.0, 300), rng.normal(0.4, 1.0, 120)  # groups of different sizes
    shifted = bootstrap_difference(a, b, seed=1)
    assert shifted.difference == pytest.approx(b.mean() - a.mean()) and shifted.low > 0 and shifted.significant
    assert permutation_test(a, b, seed=1) < 0.01
    same = rng.normal(0.0, 1.0, 120)
    assert not bootstrap_difference(a, same, seed=1).significant and permutation_test(a, same, seed=1) > 0.05
    assert bootstrap_difference(a, b, seed=5) == bootstrap_difference(a, b, seed=5)  # seeded
    with pytest.raises(ValueError):
        permutation_test([], b)
