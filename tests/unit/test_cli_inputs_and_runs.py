"""Inputs that must fail clearly (JSON, GGUF, sampling options), run folders read back, stored reports compared."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from tuneforge.cli.render import ProgressRenderer, dataset_line, summary_table
from tuneforge.config import TrainConfig
from tuneforge.data.readers import read_records
from tuneforge.errors import ConfigError, DataError, NotFoundError
from tuneforge.evaluation.compare import compare_reports, on_shared_examples
from tuneforge.evaluation.results import EvalReport
from tuneforge.models.resolve import resolve_model
from tuneforge.progress import ProgressEvent, ProgressKind
from tuneforge.services.models import Sampling
from tuneforge.services.runs import collect_provenance, diff_runs, git_state, list_runs, show_run
from tuneforge.storage.rundir import RunDir


@pytest.mark.parametrize(("name", "content", "needles"), [
    ("comma.jsonl", '{"messages": [{"role": "user", "content": "hello"} {"role": "assistant"}]}\n',
     ["line 1", "Expecting ',' delimiter at column 52"]),
    ("second.json", '[\n  {"text": "a"},\n  {"text": "b",, "x": 1}\n]\n', ["line 3", "at column 16"]),
    ("control.jsonl", '{"text": "ok"}\n{"text": "a\tb"}\n', ["line 2", "Invalid control character at column 12"]),
    ("lines.json", '{"text": "a"}\n{"text": "b"}\n', ["line 2", "rename the file to .jsonl"]),
])
def test_json_errors_name_the_line_and_column(tmp_path, name, content, needles):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        read_records(path)
    text = f"{caught.value.message} {caught.value.hint}"
    assert all(needle in text for needle in needles), text
    assert " at at " not in text


def test_a_byte_order_mark_is_skipped_and_other_encodings_are_named(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes('\ufeff{"text": "a"}\n'.encode())
    assert read_records(bom)[0].data == {"text": "a"}
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"line 2: not UTF-8 text: byte 0xe9 at column 14"):
        read_records(latin)


def test_a_file_that_is_not_gguf_is_a_config_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>404 not found</html>")
    for convert in (True, False):
        with pytest.raises(ConfigError, match="is not a GGUF file"):
            resolve_model(str(fake), cache_dir=tmp_path / "cache", convert=convert)
    real = tmp_path / "real.gguf"
    real.write_bytes(b"GGUF" + bytes(16))
    resolved = resolve_model(str(real), cache_dir=tmp_path / "cache", convert=False)
    assert resolved.path == real.resolve() and not (tmp_path / "cache").exists()  # checked, not converted


def test_sampling_options_are_checked_and_greedy_by_default():
    assert Sampling().generate_kwargs() == {"max_new_tokens": 128, "do_sample": False}
    assert Sampling(temperature=0.7, top_p=0.9).generate_kwargs()["do_sample"] is True
    for bad in ({"top_p": 0.0}, {"temperature": -1.0}, {"max_new_tokens": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Sampling(**bad)


def test_summary_and_data_line_say_each_figure_once():
    table = io.StringIO()
    Console(file=table, width=100).print(summary_table({"method": "lora", "eval_loss": None, "trained_tokens": 48}))
    assert "eval_loss" not in table.getvalue() and "None" not in table.getvalue() and "48" in table.getvalue()
    stats = {"examples": 8, "format": "classification", "tokens": 90, "truncated": 0, "dropped": 0}
    assert "trained" not in dataset_line({**stats, "trained_tokens": None})
    assert "24 trained per epoch" in dataset_line({**stats, "trained_tokens": 24})


def test_a_plain_line_between_logging_steps_shows_no_stale_loss():
    out = io.StringIO()
    with ProgressRenderer(Console(file=out, width=120), plain=True) as render:
        render(ProgressEvent(ProgressKind.STAGE, "training", step=0, total=3))
        render(ProgressEvent(ProgressKind.STEP, step=1, total=3,
                             data={"tokens_per_second": 9.0, "loss": 2.0, "learning_rate": 0.1, "logged": True}))
        render(ProgressEvent(ProgressKind.STEP, step=3, total=3, data={"tokens_per_second": 9.0, "loss": 2.0}))
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("step 1/3  loss 2.0000") and lines[2] == "step 3/3  9 tok/s"


def report(model: str, lines: list[int], hits: list[int], sha: str = "s1") -> EvalReport:
    examples = [{"line": n, "reference": "r", "prediction": "p", "stats": {"exact_match": h}} for n, h in zip(lines, hits)]
    return EvalReport.model_validate({
        "key": model, "model": model, "created_at": "now", "tuneforge_version": "0", "config": {}, "seconds": 1.0,
        "model_figures": {"reference": model, "base": model, "adapter": None, "parameters": 1, "adapter_parameters": 0,
                          "disk_mb": 1.0, "load_seconds": 0.1, "peak_memory_mb": 1.0, "memory": "x", "device": "cpu"},
        "tasks": [{"name": "qa", "data": "test.jsonl", "data_sha256": sha, "format": "qa", "task_type": "qa",
                   "examples": len(lines), "max_new_tokens": 8, "metrics": {"exact_match": sum(hits) / len(hits)},
                   "speed": None, "per_example": examples}],
    })


def test_stored_reports_are_compared_on_the_examples_they_share():
    a = report("base", [1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 1, 1, 1, 1])
    b = report("tuned", [1, 2, 3, 4], [1, 1, 1, 1])  # evaluated with --limit 4
    shared_a, shared_b = on_shared_examples(a, b)
    assert shared_a.tasks[0].examples == 4 and shared_a.tasks[0].metrics["exact_match"] == 0.0
    comparison = compare_reports(shared_a, shared_b, resamples=200)
    assert comparison.metrics[0].a == 0.0 and comparison.metrics[0].b == 1.0
    with pytest.raises(ConfigError, match="share no task on the same data"):
        on_shared_examples(a, report("other", [1, 2], [1, 1], sha="s2"))


def fake_run(root: Path, *, lr: float, created: str, eval_loss: float | None) -> Path:
    run = RunDir(root)
    root.mkdir(parents=True)
    run.write_marker(status="completed", model="tiny", method="lora")
    run.config.write_text(f"model: tiny\ntrain:\n  learning_rate: {lr}\n")
    run.summary.write_text(json.dumps({"final_loss": 0.5, "eval_loss": eval_loss, "global_step": 4}))
    run.write_provenance({"created_at": created, "packages": {"torch": "2.0"}, "git": None})
    return root


def test_runs_are_listed_shown_and_diffed(tmp_path):
    fake_run(tmp_path / "runs" / "a", lr=0.01, created="2026-01-01T00:00:00+00:00", eval_loss=None)
    fake_run(tmp_path / "runs" / "b", lr=0.02, created="2026-01-02T00:00:00+00:00", eval_loss=1.5)
    (tmp_path / "runs" / "notes").mkdir()
    rows = list_runs(tmp_path / "runs")
    assert [r.path.name for r in rows] == ["b", "a"] and rows[0].eval_loss == 1.5 and rows[1].status == "completed"
    assert show_run(tmp_path / "runs" / "a")["provenance"]["packages"] == {"torch": "2.0"}
    differences = {(d.section, d.key): (d.a, d.b) for d in diff_runs(tmp_path / "runs" / "a", tmp_path / "runs" / "b")}
    assert differences[("config", "train.learning_rate")] == (0.01, 0.02)
    assert ("provenance", "created_at") in differences and ("config", "model") not in differences
    with pytest.raises(NotFoundError, match="not a tuneforge run folder"):
        show_run(tmp_path / "runs" / "notes")


def test_a_checkpoint_whose_trainer_state_was_cut_short_is_not_resumed_from(tmp_path):
    """transformers writes trainer_state.json in place, last: a kill while it is written leaves a file that exists
    but does not parse (CI: a resume after SIGKILL failed with JSONDecodeError). The one before is resumed from."""
    run = RunDir(tmp_path)
    for step, state in ((10, '{"global_step": 10}'), (20, '{"global_step": 20}'), (30, '{"global_st'), (40, "")):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(state)
    (run.checkpoints / "checkpoint-50").mkdir()  # killed before its state was begun
    assert [p.name for p in run.complete_checkpoints()] == ["checkpoint-10", "checkpoint-20"]
    assert run.latest_checkpoint().name == "checkpoint-20"


def test_provenance_names_versions_data_commit_and_machine(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a"}\n')
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: x\n")
    config = TrainConfig(model="x", data={"train": str(data)}, output_dir=str(tmp_path / "run"))
    assert git_state(tmp_path) is None
    for args in (["init", "-q"], ["add", "c.yaml"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True)
    clean = collect_provenance(config, config_file=config_file, command=["tuneforge", "train", "c.yaml"])
    config_file.write_text("model: y\n")
    dirty = collect_provenance(config, config_file=config_file)
    assert clean["git"]["dirty"] is False and dirty["git"]["dirty"] is True and len(clean["git"]["commit"]) == 40
    assert clean["data_sha256"] == {str(data): "7c24616314d4c7ddcc755cd2cb42baf4e49ac41b1492fa02c30adc34e1cb2e5d"}
    assert clean["packages"]["torch"] and clean["packages"]["tuneforge"] and clean["command"][1] == "train"
    assert clean["machine"]["cpus"] >= 1 and clean["machine"]["python"].count(".") == 2
