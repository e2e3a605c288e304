"""Hyperparameter search on a tiny model: studies end to end, pruning, resume after SIGKILL, two processes.

Each study runs real trial processes (training a tiny Llama a few steps), so the tests keep to a handful
of trials with one thread each.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import yaml

from fixtures.data import MEMORIZE, write_jsonl
from tuneforge.config import TrainConfig, load_config
from tuneforge.errors import ConflictError
from tuneforge.settings import Settings

pytest.importorskip("optuna")

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture
def workdir(tmp_path, tiny_model) -> Path:
    """A base config (8 steps, eval every 2) and its data in ``tmp_path``."""
    write_jsonl(tmp_path / "train.jsonl", MEMORIZE)
    write_jsonl(tmp_path / "eval.jsonl", MEMORIZE[:4])
    base = {"model": str(tiny_model), "method": {"name": "lora", "r": 4},
            "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")},
            "train": {"max_steps": 8, "batch_size": 4, "eval_steps": 2, "logging_steps": 2, "save_steps": 100,
                      "precision": "fp32", "learning_rate": 1e-3}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(base))
    return tmp_path


def write_search(folder: Path, **fields) -> Path:
    search = {"base": "config.yaml",
              "space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                        "method.r": {"type": "categorical", "choices": [2, 4]}},
              "objective": [{"metric": "eval_loss"}], "sampler": "tpe", "pruner": "median", "n_trials": 4,
              "max_concurrent": 2, **fields}
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(search, sort_keys=False))
    return path


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "TUNEFORGE_HOME": str(home), "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1"}


def cli(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneforge.cli.app", *args], env=env(home), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def study(name: str, home: Path):
    from tuneforge.hpo.study import load_study

    return load_study(name, settings=Settings(home=str(home)))


def test_tpe_study_end_to_end_with_outputs(workdir):
    home = workdir / "home"
    result = cli("tune", str(write_search(workdir)), "--study", "tpe", "--threads", "1", home=home, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trials 4/4" in result.stdout  # plain progress lines off a terminal
    out = home / "hpo" / "tpe"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 4 and {r["state"] for r in rows} <= {"complete", "pruned"}
    best = load_config(out / "best.yaml", TrainConfig)  # trains as it is
    stored = study("tpe", home)
    assert best.train.learning_rate == stored.best_params["train.learning_rate"]
    assert best.method.r == stored.best_params["method.r"] and best.train.max_steps == 8
    for plot in ("optimization_history", "param_importances", "parallel_coordinate", "slice"):
        assert (out / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"
    assert "fANOVA" in (out / "summary.md").read_text()
    from tuneforge.services.hpo import best, tune

    with pytest.raises(ConflictError, match="exists already"):
        tune(workdir / "search.yaml", study="tpe", settings=Settings(home=str(home)))
    path, trained = best("tpe", settings=Settings(home=str(home)), output=workdir / "b.yaml")
    assert trained is None and yaml.safe_load(path.read_text()) == yaml.safe_load((out / "best.yaml").read_text())
    refused = cli("tune", "best", "tpe", "--register", "bot", home=home, cwd=workdir)
    assert refused.returncode != 0 and "--register needs --train" in refused.stdout + refused.stderr
    trained = cli("tune", "best", "tpe", "--train", "--register", "bot", "-o", str(workdir / "c.yaml"),
                  home=home, cwd=workdir)
    assert trained.returncode == 0 and "registered bot:1" in trained.stdout, trained.stdout + trained.stderr


def test_pruning_stops_a_bad_trial_early(workdir):
    from tuneforge.hpo.local import run_local_study
    from tuneforge.hpo.space import load_search
    from tuneforge.hpo.study import create_study

    settings = Settings(home=str(workdir / "home"))
    loaded = load_search(write_search(workdir, n_trials=3, max_concurrent=1))
    created = create_study(loaded, name="prune", settings=settings, output=workdir / "out")
    for lr in (3e-2, 3e-2, 1e-7):  # two that learn, then one that cannot: the median pruner stops it
        created.enqueue_trial({"train.learning_rate": lr, "method.r": 4})
    run_local_study(loaded, name="prune", settings=settings, output=workdir / "out", resume=True)
    trials = study("prune", workdir / "home").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert [t.user_attrs["steps"] for t in trials] == [8, 8, 2]  # the bad one stopped at its first evaluation
    assert sorted(trials[2].intermediate_values) == [2]
    steps = [line for line in (workdir / "out/trials/trial-0002/metrics.jsonl").read_text().splitlines()]
    assert max(yaml.safe_load(line)["step"] for line in steps) == 2


def test_nsga2_two_objectives_give_a_pareto_front(workdir):
    from tuneforge.services.hpo import tune

    home = workdir / "home"
    search = write_search(workdir, sampler="nsga2", pruner="none", n_trials=3, max_steps=4,
                          objective=[{"metric": "eval_loss"},
                                     {"metric": "exact_match", "data": "eval.jsonl", "max_new_tokens": 4}])
    result, outputs = tune(search, study="pareto", settings=Settings(home=str(home)))
    assert result.counts.complete == 3
    stored = study("pareto", home)
    assert [d.name for d in stored.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(len(t.values) == 2 for t in stored.trials) and stored.best_trials
    assert all(0 <= t.values[1] <= 1 and t.user_attrs["exact_match"] == t.values[1] for t in stored.trials)
    assert {t.user_attrs["steps"] for t in stored.trials} == {4}  # the search's per-trial cap (the base says 8)
    out = home / "hpo" / "pareto"
    assert outputs.best == out / "best.yaml"
    assert (out / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"
    assert "Pareto front" in (out / "summary.md").read_text()


RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from tuneforge.hpo.local import run_local_study
    from tuneforge.hpo.space import load_search
    from tuneforge.settings import Settings

    if __name__ == "__main__":
        home, search, name, output, resume = sys.argv[1:6]
        settings = Settings(home=home, heartbeat_seconds=1, stale_after_seconds=3)
        run_local_study(load_search(search), name=name, settings=settings, output=Path(output),
                        resume=resume == "1", progress=lambda e: print(e.kind.value, e.message, flush=True))
""")


def runner(workdir: Path, name: str, *, resume: bool) -> subprocess.Popen:
    script = workdir / "runner.py"
    script.write_text(RUNNER)
    args = [sys.executable, str(script), str(workdir / "home"), str(workdir / "search.yaml"), name,
            str(workdir / "out"), "1" if resume else "0"]
    # Its output goes to a file, not a pipe nobody reads while it runs (a full pipe would block the study).
    with (workdir / f"{name}-{'resume' if resume else 'start'}.log").open("w") as log:
        process = subprocess.Popen(args, env=env(workdir / "home"), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
    process.log = Path(log.name)
    return process


def finish(process: subprocess.Popen, timeout: float) -> str:
    """Wait for a :func:`runner` process; its output."""
    process.wait(timeout=timeout)
    return process.log.read_text()


def test_resume_after_sigkill_keeps_finished_trials_and_retries_the_killed_one(workdir):
    # Trials long enough (a few seconds) that the kill lands inside the second one, not after it ended.
    base = yaml.safe_load((workdir / "config.yaml").read_text())
    base["train"].update(max_steps=200, eval_steps=50, logging_steps=50)
    (workdir / "config.yaml").write_text(yaml.safe_dump(base))
    write_search(workdir, n_trials=2, max_concurrent=1, pruner="none")
    # On a loaded machine the poll below may see the second trial so late that it ends before the kill lands (then
    # there is nothing to retry): that try is set aside and another study started.
    for attempt in range(3):
        name = f"killed-{attempt}"
        first = runner(workdir, name, resume=False)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
            try:
                trials = study(name, workdir / "home").trials
            except Exception:  # noqa: BLE001 - the study is not created yet
                continue
            # The second trial is training: its run_dir is set after all its values were suggested (each suggest is
            # its own storage write, so a kill between two of them leaves a trial with only some of its values).
            training = [t for t in trials if t.state.name == "RUNNING" and "run_dir" in t.user_attrs]
            if training and any(t.state.name == "COMPLETE" for t in trials):
                break
        if first.poll() is not None:  # the study ended before the poll saw its second trial training
            output = finish(first, 10)
            assert first.returncode == 0, output  # a crash shows here
            continue
        children = psutil.Process(first.pid).children(recursive=True)  # its trial process
        os.kill(first.pid, signal.SIGKILL)  # the study process only: its trial process ends through its watchdog
        first.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, alive
        if "RUNNING" in [t.state.name for t in study(name, workdir / "home").trials]:
            break
    else:
        raise AssertionError("the second trial ended before its study process was killed, three times")
    before = {t.number: t.values for t in study(name, workdir / "home").trials if t.state.name == "COMPLETE"}
    assert before
    second = runner(workdir, name, resume=True)
    output = finish(second, 240)
    assert second.returncode == 0, output
    trials = study(name, workdir / "home").trials
    assert {n: trials[n].values for n in before} == before  # finished trials are kept as they were
    failed = [t for t in trials if t.state.name == "FAIL"]
    retried = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(failed) == 1 and len(retried) == 1 and retried[0].state.name == "COMPLETE"
    assert retried[0].params == failed[0].params  # the retry runs the killed trial's values again
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2


def test_two_processes_share_one_study_and_never_run_a_trial_twice(workdir):
    from tuneforge.hpo.space import load_search
    from tuneforge.hpo.study import create_study

    write_search(workdir, n_trials=4, max_concurrent=1, sampler="random", pruner="none")
    create_study(load_search(workdir / "search.yaml"), name="shared", settings=Settings(home=str(workdir / "home")),
                 output=workdir / "out")
    from tuneforge.hpo.local import run_local_study

    other = runner(workdir, "shared", resume=True)  # a second process on the same SQLite study, with this one
    run_local_study(load_search(workdir / "search.yaml"), name="shared", resume=True, output=workdir / "out",
                    settings=Settings(home=str(workdir / "home"), heartbeat_seconds=1, stale_after_seconds=3))
    output = finish(other, 240)
    assert other.returncode == 0, output
    trials = study("shared", workdir / "home").trials
    assert [t.state.name for t in trials].count("COMPLETE") >= 4
    starts = [line.split() for line in (workdir / "out" / "trials.log").read_text().splitlines()]
    assert Counter(number for number, _, _ in starts).most_common(1)[0][1] == 1  # no trial started twice
    assert len({pid for _, pid, _ in starts}) >= 2  # both processes ran trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # distinct samples (own seeds)
