"""Evaluation end to end: the eval and compare CLI on the tiny model, bad input, suites, the gate, SmolLM2."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures.data import MEMORIZE, write_jsonl

CLI = [sys.executable, "-m", "tuneforge.cli.app"]
ALL_GENERATION_METRICS = "exact_match,token_f1,bleu,chrf,rouge1,rouge2,rougeL,perplexity"


def tuneforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=dict(os.environ), timeout=600)


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "error:" in result.stderr and "hint:" in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("eval-data") / "memorize.jsonl", MEMORIZE)


@pytest.fixture(scope="module")
def tiny_report(tiny_model, data_file, tmp_path_factory) -> dict:
    """`tuneforge eval` of the tiny model with every generation metric; the JSON and Markdown it wrote."""
    out = tmp_path_factory.mktemp("eval-out")
    result = tuneforge("eval", tiny_model, "--data", data_file, "--metrics", ALL_GENERATION_METRICS,
                       "--max-new-tokens", "6", "--latency-samples", "3", "-o", out / "r.json",
                       "--markdown", out / "r.md")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "r.json").read_text())
    return {"json": out / "r.json", "md": out / "r.md", "stdout": result.stdout, "report": report}


def test_eval_reports_metrics_cost_and_stores_the_result(tiny_report, tiny_model, data_file, settings):
    from transformers import AutoModelForCausalLM

    from tuneforge.evaluation.results import find_results

    report = tiny_report["report"]
    (task,) = report["tasks"]
    assert report["kind"] == "evaluation" and report["model"] == str(Path(tiny_model).resolve())
    assert task["name"] == "memorize" and task["examples"] == 8 and len(task["per_example"]) == 8
    assert list(task["metrics"]) == ALL_GENERATION_METRICS.split(",")
    assert task["data_sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert task["per_example"][0]["reference"] == "3" and task["per_example"][0]["line"] == 1
    speed, figures = task["speed"], report["model_figures"]
    assert speed["requests"] == 3 and 0 < speed["ttft_p50_ms"] <= speed["latency_p50_ms"] <= speed["latency_p95_ms"]
    assert speed["tokens_per_second"] > 0 and speed["generated_tokens"] > 0
    assert figures["parameters"] == AutoModelForCausalLM.from_pretrained(tiny_model).num_parameters()
    assert figures["disk_mb"] > 0 and figures["peak_memory_mb"] > 0 and figures["adapter"] is None
    assert 1 < task["metrics"]["perplexity"] < math.inf
    stored = Path(os.environ["TUNEFORGE_HOME"]) / "evaluations" / f"{report['key']}.json"
    assert json.loads(stored.read_text()) == report
    folder = settings.evaluations_dir
    assert stored == folder / f"{report['key']}.json"
    assert stored in find_results(folder=folder, model=report["model"], data_sha256=task["data_sha256"])
    assert stored not in find_results(folder=folder, model=report["model"], data_sha256="0" * 64)
    markdown = tiny_report["md"].read_text()
    assert "| memorize | chrf |" in markdown and "latency p50 (ms)" in markdown
    assert "exact_match" in tiny_report["stdout"] and "stored as" in tiny_report["stdout"]


def test_perplexity_equals_transformers_loss(tiny_model, settings):
    import torch

    from tuneforge.data import load_examples
    from tuneforge.data.tokenize import tokenize_examples
    from tuneforge.evaluation.runner import reference_nll
    from tuneforge.models.inference import load_for_inference

    model, tokenizer, _ = load_for_inference(str(tiny_model), cache_dir=settings.model_cache_dir)
    folder = Path(tiny_model).parent
    chat, _ = load_examples(write_jsonl(folder / "ppl-chat.jsonl", MEMORIZE[:2]))
    text, _ = load_examples(write_jsonl(folder / "ppl-text.jsonl", [{"text": "The quick brown fox."}]))
    for examples in (chat, text):
        totals = reference_nll(model, tokenizer, examples, batch_size=2)  # padded batch of two for the chats
        for example, (nll, tokens) in zip(examples, totals):
            (row,), _ = tokenize_examples([example], tokenizer, max_seq_length=256)
            with torch.no_grad():
                loss = model(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss
            assert nll / tokens == pytest.approx(float(loss), rel=1e-4)


def test_compare_same_model_is_no_difference_and_draws_a_chart(tiny_model, tiny_report, data_file, tmp_path):
    result = tuneforge("compare", tiny_model, tiny_report["json"], "--data", data_file, "--metrics",
                       "exact_match,chrf", "--max-new-tokens", "6", "--latency-samples", "1",
                       "-o", tmp_path / "c.json", "--markdown", tmp_path / "c.md", "--chart", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr
    comparison = json.loads((tmp_path / "c.json").read_text())
    assert comparison["verdict"] == "no significant difference"
    em, chrf = comparison["metrics"]
    assert (em["metric"], em["difference"], em["mcnemar_p"]) == ("exact_match", 0, 1.0)
    assert chrf["ci_low"] == chrf["ci_high"] == 0  # deterministic: the same answers as the earlier eval
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| memorize | exact_match |" in (tmp_path / "c.md").read_text()
    assert "verdict: no significant difference" in result.stdout


def perfect(report: dict) -> dict:
    """The same report as if every answer had been right."""
    better = json.loads(json.dumps(report))
    task = better["tasks"][0]
    for example in task["per_example"]:
        example["prediction"] = example["reference"]
        example["stats"]["exact_match"] = 1
    task["metrics"]["exact_match"] = 1.0
    return better


def test_compare_reports_says_b_is_better_when_it_wins_every_pair(tiny_report, data_file, tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(perfect(tiny_report["report"])))
    result = tuneforge("compare", tiny_report["json"], tmp_path / "b.json", "--data", data_file,
                       "-o", tmp_path / "c.json")
    assert result.returncode == 0, result.stderr
    em = json.loads((tmp_path / "c.json").read_text())["metrics"][0]
    assert em["verdict"] == "B better" and em["only_b"] == 8 and em["mcnemar_p"] == pytest.approx(2 / 2**8)


def test_regression_gate_fails_and_passes(tiny_model, tiny_report, data_file, tmp_path):
    (tmp_path / "better.json").write_text(json.dumps(perfect(tiny_report["report"])))
    args = ["eval", tiny_model, "--data", data_file, "--metrics", ALL_GENERATION_METRICS, "--max-new-tokens", "6",
            "--latency-samples", "0"]
    failed = tuneforge(*args, "--baseline", tmp_path / "better.json", "--max-drop", "exact_match=0.5",
                       "--max-drop", "chrf=1")
    assert_clean_error(failed, "regression against the baseline", "memorize/exact_match fell by 1", "allowed 0.5")
    assert "chrf" not in failed.stderr  # the same answers: chrF did not fall
    passed = tuneforge(*args, "--baseline", tiny_report["json"], "-o", tmp_path / "again.json")
    assert passed.returncode == 0, passed.stderr
    assert "gate passed" in passed.stdout
    again = json.loads((tmp_path / "again.json").read_text())["tasks"][0]["per_example"]
    before = tiny_report["report"]["tasks"][0]["per_example"]
    assert [e["prediction"] for e in again] == [e["prediction"] for e in before]


def test_suite_runs_builtin_and_file_tasks(tiny_model, data_file, tmp_path):
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "labels.jsonl", [{"text": "great film", "label": "positive"},
                                                     {"text": "awful meal", "label": "negative"}])
    suite = {"name": "smoke", "latency_samples": 0, "tasks": [
        {"builtin": "sentiment", "limit": 4},
        {"data": "data/labels.jsonl", "max_new_tokens": 3},
        {"name": "sums", "data": str(data_file), "metrics": ["exact_match", "perplexity"], "limit": 3},
    ]}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    result = tuneforge("eval", tiny_model, "--suite", tmp_path / "suite.yaml", "-o", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "r.json").read_text())["tasks"]
    assert [(t["name"], t["task_type"], t["examples"], list(t["metrics"])) for t in tasks] == [
        ("sentiment", "classification", 4, ["accuracy", "macro_f1"]),
        ("labels", "classification", 2, ["accuracy", "macro_f1"]),
        ("sums", "generation", 3, ["exact_match", "perplexity"]),
    ]


def test_builtin_profile_extraction_is_the_quickstart_test_split(tmp_path):
    from tuneforge.evaluation.suites import TaskConfig, load_task
    from tuneforge.services.quickstart import write_task_data

    paths = write_task_data(tmp_path)
    builtin = load_task(TaskConfig(builtin="profile-extraction"))
    from_file = load_task(TaskConfig(data=str(paths["test"])))
    assert builtin.data_sha256 == from_file.data_sha256 == hashlib.sha256(paths["test"].read_bytes()).hexdigest()
    assert [e.messages for e in builtin.examples] == [e.messages for e in from_file.examples]
    assert builtin.metrics == ["exact_match", "token_f1", "chrf"] and builtin.max_new_tokens == 48


BAD_INPUT = {
    "missing data": (["--data", "{tmp}/nope.jsonl"], ["data file not found"]),
    "empty test set": (["--data", "{tmp}/empty.jsonl"], ["holds no examples"]),
    "malformed line": (["--data", "{tmp}/broken.jsonl"], ["broken.jsonl, line 2", "not valid JSON"]),
    "metric unfit for classification": (["--data", "{tmp}/labels.jsonl", "--metrics", "bleu"],
                                        ["metric 'bleu' does not fit a classification task", "field 'metrics'"]),
    "metric unfit for raw text": (["--data", "{tmp}/text.jsonl", "--metrics", "exact_match"],
                                  ["does not fit a language_modeling task"]),
    "unknown metric": (["--data", "{tmp}/labels.jsonl", "--metrics", "blue"],
                       ["unknown metric 'blue'", "did you mean 'bleu'"]),
    "two sources": (["--data", "{tmp}/labels.jsonl", "--task", "sentiment"], ["exactly one of --data"]),
    "suite typo": (["--suite", "{tmp}/suite.yaml"],
                   ["suite.yaml, line 3, field 'tasks.0.metric'", "unknown key 'metric'"]),
    "max-drop without baseline": (["--data", "{tmp}/labels.jsonl", "--max-drop", "accuracy=0.1"], ["needs --baseline"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_error_and_hint_lines(case, tiny_model, tmp_path):
    write_jsonl(tmp_path / "labels.jsonl", [{"text": "great film", "label": "positive"}])
    write_jsonl(tmp_path / "text.jsonl", [{"text": "Some raw text."}])
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "broken.jsonl").write_text(json.dumps(MEMORIZE[0]) + "\n{not json\n")
    (tmp_path / "suite.yaml").write_text("tasks:\n  - builtin: arithmetic\n    metric: [exact_match]\n")
    args, needles = BAD_INPUT[case]
    assert_clean_error(tuneforge("eval", tiny_model, *(a.format(tmp=tmp_path) for a in args)), *needles)


def test_a_model_that_cannot_be_loaded_is_a_clean_error(data_file, tmp_path):
    assert_clean_error(tuneforge("eval", tmp_path / "no-model", "--data", data_file), "not found")
    assert_clean_error(tuneforge("compare", "smollm2-135m", tmp_path / "no-model", "--data", tmp_path / "none.jsonl"),
                       "data file not found")  # the data is checked before any model is loaded


@pytest.mark.slow
def test_quickstart_adapter_is_significantly_better_than_base(quickstart_result, tmp_path, settings):
    from tuneforge.evaluation.reports import comparison_markdown, write_report
    from tuneforge.services.evaluation import compare

    report = compare("smollm2-135m", quickstart_result.run_dir, {"tasks": [{"builtin": "profile-extraction"}]},
                     settings=settings)
    write_report(report, tmp_path / "base-vs-tuned.png")
    print("\n" + comparison_markdown(report))
    em = next(m for m in report.metrics if m.metric == "exact_match")
    assert report.verdict == "B better" and report.primary == "profile-extraction/exact_match"
    assert em.b >= 0.8 and em.a <= 0.2 and em.mcnemar_p < 0.001 and em.ci_low > 0.5
    assert all(m.verdict == "B better" for m in report.metrics)
    assert report.b.model_figures.adapter_parameters > 0
    assert report.b.model_figures.parameters == report.a.model_figures.parameters  # the adapter is merged


def test_eval_of_a_run_directory_counts_the_adapter_and_merges_it(tiny_model, data_file, tmp_path, settings):
    from safetensors.torch import load_file

    from tuneforge.config import TrainConfig
    from tuneforge.services.evaluation import evaluate
    from tuneforge.training import run_training

    run = run_training(TrainConfig(
        model=str(tiny_model), method={"name": "lora", "r": 4}, data={"train": str(data_file)},
        train={"max_steps": 2, "batch_size": 4, "precision": "fp32"}, output_dir=str(tmp_path / "run"),
    ), settings=settings)
    suite = {"tasks": [{"data": str(data_file), "metrics": ["exact_match"], "max_new_tokens": 4}], "latency_samples": 1}
    tuned = evaluate(str(run.output_dir), suite, store=False, settings=settings)
    base = evaluate(str(tiny_model), suite, store=False, settings=settings)
    saved = load_file(run.output_dir / "adapter" / "adapter_model.safetensors")
    assert tuned.model_figures.adapter_parameters == sum(t.numel() for t in saved.values()) > 0
    assert base.model_figures.adapter_parameters == 0
    assert tuned.model_figures.parameters == base.model_figures.parameters  # merged into the base weights
    assert tuned.model_figures.disk_mb > base.model_figures.disk_mb
    assert tuned.model_figures.adapter == str(run.output_dir / "adapter")
