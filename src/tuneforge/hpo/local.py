"""``tuneforge tune``: run a study's trials on this machine, each in its own process, ``max_concurrent`` at once.

Trial processes are forked from a forkserver that imported torch and the trainers once, so a trial starts
fast while a crash (or an out-of-memory kill) ends only that trial. A trial process exits when the study
process dies (a watchdog), so that a killed study leaves no orphan training: its running trials go stale
and are retried by the heartbeat when the study is resumed.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.hpo.study import StudyCounts, create_study, fail_stale, study_counts
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress

if TYPE_CHECKING:
    import optuna

    from tuneforge.hpo.space import LoadedSearch
    from tuneforge.settings import Settings

PRELOAD = ["torch", "transformers", "peft", "optuna", "tuneforge.training.run", "tuneforge.hpo.objective"]
POLL_SECONDS = 0.5
MAX_LAUNCHES = 3  # trial processes per trial at most, so that a crash at start cannot loop forever


@dataclass(frozen=True)
class LocalStudy:
    """What a local run left: the study's name, its output folder and its counts."""

    name: str
    output: Path
    counts: StudyCounts
    seconds: float


def run_local_study(search: LoadedSearch, *, name: str, settings: Settings, output: Path, resume: bool = False,
                    threads: int = 1, progress: ProgressCallback = no_progress,
                    stop: threading.Event | None = None) -> LocalStudy:
    """Create (or resume) the study and run trials until ``n_trials`` are done or the time budget is spent.

    Args:
        search: The checked search.
        name: The study name in the platform's database.
        settings: The database and model cache.
        output: Folder of the trial runs and of the outputs.
        resume: Continue the stored study (finished trials are kept; dead ones are retried).
        threads: torch threads per trial process.
        progress: Receives a ``trials`` step per finished trial and a message per trial outcome.
        stop: When set, start no new trial and wait for the running ones.
    """
    study = create_study(search, name=name, settings=settings, output=output, resume=resume)
    started = time.monotonic()
    deadline = started + search.config.timeout_minutes * 60 if search.config.timeout_minutes else None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    running: dict[int, BaseProcess] = {}
    launched, seen = 0, None
    # A fresh study is reproducible from its seed; a process that joins or resumes one must not repeat the seeds
    # (and so the samples) of the processes before it.
    offset = 0 if not resume else 1000 * (os.getpid() % 100_000)
    while True:
        for key, process in list(running.items()):
            if not process.is_alive():
                process.join()
                del running[key]
                if process.exitcode:
                    progress(ProgressEvent(ProgressKind.MESSAGE, f"a trial process exited with code {process.exitcode}",
                                           data={"exitcode": process.exitcode}))
        fail_stale(study)
        counts = study_counts(study)
        seen = _report(study, seen, counts, total=search.config.n_trials, progress=progress)
        open_for_more = (study.user_attrs.get("state") == "running" and not (stop and stop.is_set())
                         and (deadline is None or time.monotonic() < deadline)
                         and launched < MAX_LAUNCHES * search.config.n_trials)  # a process that dies at once
        wanted = search.config.n_trials - counts.done - max(counts.running, len(running))
        if open_for_more and wanted > 0 and len(running) < search.config.max_concurrent:
            process = context.Process(target=trial_process, daemon=False, name=f"trial-{launched}",
                                      args=(name, settings.model_dump_json(), search.config.seed + offset + launched,
                                            threads, os.getpid()))
            process.start()
            running[launched] = process
            launched += 1
            continue
        if not running and (not open_for_more or (wanted <= 0 and counts.running == 0)):
            break
        time.sleep(POLL_SECONDS)
    return LocalStudy(name=name, output=output, counts=study_counts(study), seconds=time.monotonic() - started)


def trial_process(name: str, settings_json: str, seed: int, threads: int, parent_pid: int) -> None:
    """Entry point of a trial process: one trial of the study, then exit."""
    import signal
    import warnings

    import torch

    warnings.filterwarnings("ignore")  # the study process reports each trial's outcome; its libraries stay quiet
    # Ctrl-C reaches the whole process group: the study process decides (no new trials; a second one quits, and
    # this process follows through its watchdog, its trial retried on resume).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from tuneforge.hpo.study import run_one_trial
    from tuneforge.jobs.process import watch_parent
    from tuneforge.settings import Settings

    watch_parent(parent_pid, every=0.5, name="study-watchdog")  # a killed study: its trials retried on resume
    torch.set_num_threads(threads)
    run_one_trial(name, settings=Settings.model_validate_json(settings_json), seed=seed)


def _outcomes(study: optuna.Study) -> dict[int, str]:
    from optuna.trial import TrialState

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False, states=finished)}


def _report(study: optuna.Study, seen: dict[int, str] | None, counts: StudyCounts, *, total: int,
            progress: ProgressCallback) -> dict[int, str]:
    """A message per newly finished trial and a ``trials`` step with the counts and the best value."""
    now = _outcomes(study)
    new = sorted(set(now) - set(seen)) if seen is not None else []
    for number in new:
        trial = study.trials[number]
        progress(ProgressEvent(ProgressKind.MESSAGE, trial_line(trial), data={"trial": number, "state": now[number]}))
    if new or seen is None:
        best = f"best {counts.best:.4g}" if counts.best is not None else "no best yet"
        progress(ProgressEvent(ProgressKind.STEP, "trials", step=counts.done, total=total, data={
            "complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed, "best": counts.best,
            "info": f"{counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed, {best}"}))
    return now


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One line about a finished trial: its outcome, values or error, steps and parameters."""
    params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
    steps = trial.user_attrs.get("steps")
    at = f" at step {steps}" if steps is not None else ""
    if trial.state.name == "COMPLETE":
        values = ", ".join(_short(v) for v in trial.values)
        return f"trial {trial.number} complete{at}: {values}  ({params})"
    if trial.state.name == "PRUNED":
        return f"trial {trial.number} pruned{at}  ({params})"
    return f"trial {trial.number} failed: {trial.user_attrs.get('error', 'the trial process died')}  ({params})"


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

