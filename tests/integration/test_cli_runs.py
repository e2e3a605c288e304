"""The real CLI on a tiny model: a piped training log, provenance and runs list/show/diff, config validate,
streamed generate, and compare of two stored eval reports."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from fixtures.data import MEMORIZE, write_jsonl
from integration.test_cli import CLI, assert_clean_error, tuneforge

from tuneforge.errors import DataError, NotFoundError
from tuneforge.services.training import check_config


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """Two runs of a tiny Llama (lr 1e-2 and 2e-2) with eval data, trained by the CLI with stdout piped."""
    root = tmp_path_factory.mktemp("cliux")
    write_jsonl(root / "train.jsonl", MEMORIZE)
    write_jsonl(root / "eval.jsonl", MEMORIZE[:4])
    logs = {}
    for name, lr in (("a", 1e-2), ("b", 2e-2)):
        config = {"model": str(tiny_model), "method": "lora", "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
                  "train": {"epochs": 2, "learning_rate": lr, "batch_size": 4, "precision": "fp32", "logging_steps": 3},
                  "output_dir": f"runs/{name}"}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        result = tuneforge("train", f"{name}.yaml", cwd=root)
        assert result.returncode == 0, result.stderr
        logs[name] = result.stdout
    return root, logs


def test_a_piped_log_states_each_figure_once(trained):
    root, logs = trained
    log, run = logs["a"], root / "runs" / "a"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in rows if "eval_loss" in r]
    assert evals == [2, 4], rows  # one per epoch; the final eval is not written again
    assert log.count("step 4: eval loss") == 1
    last = next(r for r in rows if r["step"] == 4 and "loss" in r)  # the last step logs its own loss
    assert f"step 4/4  loss {last['loss']:.4f}" in log
    summary = json.loads((run / "summary.json").read_text())
    per_epoch = int(re.search(r"(\d+) trained per epoch", log).group(1))
    assert summary["trained_tokens"] == per_epoch * 2 and summary["input_tokens"] > summary["trained_tokens"]
    assert re.search(r"eval_loss\s+│ " + f"{summary['eval_loss']:.4g}", log) and "None" not in log


def test_the_run_folder_has_provenance_and_a_model_card(trained):
    root, _ = trained
    run = root / "runs" / "a"
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["command"] == ["tuneforge", "train", "a.yaml"] and provenance["git"] is None
    assert set(provenance["data_sha256"]) == {"train.jsonl", "eval.jsonl"}
    assert all(provenance["packages"][p] for p in ("torch", "transformers", "peft", "tuneforge"))
    card = (run / "adapter" / "README.md").read_text()
    assert card.startswith("---\nbase_model:") and provenance["data_sha256"]["train.jsonl"] in card
    assert "PeftModel.from_pretrained(base, '.')" in card and "learning_rate: 0.01" in card
    assert "More Information Needed" not in card  # PEFT's blank template is replaced


def test_runs_list_show_and_diff(trained):
    root, _ = trained
    listed = tuneforge("runs", "list", "runs", cwd=root)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if "completed" in line]
    assert len(lines) == 2 and lines[0].split()[1] == "b"  # newest first
    shown = tuneforge("runs", "show", "runs/a", "--json", cwd=root)
    assert json.loads(shown.stdout)["provenance"]["command"][2] == "a.yaml"
    diff = tuneforge("runs", "diff", "runs/a", "runs/b", cwd=root)
    assert re.search(r"train\.learning_rate\s+│ 0\.01\s+│ 0\.02", diff.stdout), diff.stdout
    assert "provenance" in diff.stdout and "data_sha256" not in diff.stdout  # same data, same sha256
    assert_clean_error(tuneforge("runs", "show", "train.jsonl", cwd=root), "not a tuneforge run folder")


def test_config_validate_checks_the_model_and_the_data(trained, settings):
    root, _ = trained
    config = yaml.safe_load((root / "a.yaml").read_text())
    valid = tuneforge("config", "validate", "a.yaml", cwd=root)
    assert valid.returncode == 0 and "8 training examples (messages), 4 eval examples" in valid.stdout
    (root / "broken.jsonl").write_text((root / "train.jsonl").read_text() + '{"messages": [{"role": "bot"}]}\n')
    (root / "empty.jsonl").write_text("")
    cases = [({"data": {"train": str(root / "broken.jsonl")}}, DataError, "broken.jsonl, line 9"),
             ({"data": {"train": str(root / "empty.jsonl")}}, DataError, "holds no examples"),
             ({"model": str(root / "no-model")}, NotFoundError, "no-model' not found")]
    for change, error, needle in cases:
        with pytest.raises(error, match=needle):
            check_config({**config, **change}, settings=settings)
    with pytest.raises(NotFoundError):  # the model is checked even without the data
        check_config({**config, "model": str(root / "no-model")}, settings=settings, check_data=False)
    (root / "bad.yaml").write_text(yaml.safe_dump({**config, "data": {"train": "empty.jsonl"}}))
    assert_clean_error(tuneforge("config", "validate", "bad.yaml", cwd=root), "empty.jsonl", "no examples")
    skipped = tuneforge("config", "validate", "bad.yaml", "--no-check-data", cwd=root)
    assert skipped.returncode == 0 and "(data not checked)" in skipped.stdout


def test_generate_streams_with_sampling_options(trained):
    root, _ = trained
    once = tuneforge("generate", "runs/a", "-p", "What is 1 plus 2?", "--system", "Answer with a number.",
                     "--temperature", "0.8", "--top-p", "0.9", "--max-new-tokens", "6", cwd=root)
    assert once.returncode == 0 and once.stdout.strip(), once.stderr
    chat = subprocess.run([*CLI, "generate", "runs/a", "--chat", "--max-new-tokens", "4"], input="hello\nagain\n\n",
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert chat.returncode == 0 and chat.stdout.count("model> ") == 2, chat.stdout
    assert "[bold]" not in chat.stdout and "\x1b[" not in chat.stdout  # piped: plain text, no markup
    assert_clean_error(tuneforge("generate", "runs/a", "-p", "x", "--top-p", "0", cwd=root), "top_p")


def test_compare_two_stored_reports_without_data(trained):
    root, _ = trained
    for name, extra in (("a", []), ("b", ["--limit", "6"])):
        done = tuneforge("eval", f"runs/{name}", "--data", "train.jsonl", "--max-new-tokens", "4",
                         "--latency-samples", "1", "--output", f"{name}.json", *extra, cwd=root)
        assert done.returncode == 0, done.stderr
    compared = tuneforge("compare", "a.json", "b.json", "--output", "ab.json", cwd=root)
    assert compared.returncode == 0, compared.stderr
    report = json.loads((root / "ab.json").read_text())
    assert report["a"]["tasks"][0]["examples"] == report["b"]["tasks"][0]["examples"] == 6
    assert "verdict:" in compared.stdout
