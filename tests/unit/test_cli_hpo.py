"""``tuneforge tune``: a file argument runs a study, names run subcommands; progress lines off a terminal."""

from __future__ import annotations

import importlib.util
import io

from rich.console import Console
from typer.testing import CliRunner

from tuneforge.cli import hpo as hpo_cli
from tuneforge.cli.render import ProgressRenderer
from tuneforge.errors import ConfigError, MissingDependencyError
from tuneforge.progress import ProgressEvent, ProgressKind


def test_a_search_file_runs_a_study_and_subcommands_stay_subcommands(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path))
    result = CliRunner().invoke(hpo_cli.tune_app, [str(tmp_path / "search.yaml"), "--study", "s"])
    assert isinstance(result.exception, ConfigError) and "config file not found" in str(result.exception)
    if importlib.util.find_spec("optuna_dashboard") is None:  # the optional extra is not installed here
        result = CliRunner().invoke(hpo_cli.tune_app, ["dashboard", "--study", "s"])
        assert isinstance(result.exception, MissingDependencyError) and "optuna-dashboard" in str(result.exception)


def test_plain_progress_prints_the_trial_counts_and_each_trial(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, width=200)
    monkeypatch.setattr(hpo_cli, "console", console)
    progress = hpo_cli.TrialProgress(ProgressRenderer(console, plain=True))
    progress(ProgressEvent(ProgressKind.MESSAGE, "trial 0 pruned at step 2  (train.learning_rate=0.001)"))
    progress(ProgressEvent(ProgressKind.STEP, "trials", step=1, total=4,
                           data={"info": "0 complete, 1 pruned, 0 failed, no best yet"}))
    lines = out.getvalue().splitlines()
    assert lines == ["  trial 0 pruned at step 2  (train.learning_rate=0.001)",
                     "trials 1/4  0 complete, 1 pruned, 0 failed, no best yet"]
