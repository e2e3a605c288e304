"""Hyperparameter-search use cases: run a study here, its outputs, the best config; studies as platform jobs.

Locally (``tuneforge tune``) the trials run in processes on this machine. On the platform
(``POST /api/v1/hpo/studies``) a study is queued as jobs of kind ``hpo_trial``, one per trial, which any
worker takes; both share the study in the platform's database (:mod:`tuneforge.hpo.study`).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.errors import ConfigError, ConflictError, MissingDependencyError, NotFoundError
from tuneforge.hpo.local import LocalStudy, run_local_study
from tuneforge.hpo.outputs import StudyOutputs, best_config, write_outputs
from tuneforge.hpo.space import LoadedSearch, load_search, search_from_mapping
from tuneforge.hpo.study import create_study, load_study, set_state, stored_search, studies_url, study_counts
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.settings import Settings

if TYPE_CHECKING:
    import optuna

    from tuneforge.services.platform import Platform
    from tuneforge.storage.records import JobRecord
    from tuneforge.training.run import TrainResult

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_study_name(name: str) -> str:
    """A study name: 1-64 letters, digits, '-', '_' or '.' (it names a folder)."""
    if not NAME.match(name or ""):
        raise ConfigError(f"invalid study name {name!r}", field="name", hint="use 1-64 letters, digits, '-', '_', '.'")
    return name


def study_folder(settings: Settings, name: str) -> Path:
    """Where a study's trial runs and outputs go by default: ``TUNEFORGE_HOME/hpo/NAME``."""
    return settings.home_dir / "hpo" / name


# --- local ---------------------------------------------------------------------------------------------
def tune(search: str | Path, *, study: str, settings: Settings, resume: bool = False, output: Path | None = None,
         threads: int = 1, progress: ProgressCallback = no_progress,
         stop: threading.Event | None = None) -> tuple[LocalStudy, StudyOutputs]:
    """Run a search file's study on this machine and write its outputs (``tuneforge tune``).

    Args:
        search: The search YAML file.
        study: The study's name in the platform's database.
        settings: Database, home, model cache.
        resume: Continue the stored study of that name.
        output: Folder for trial runs and outputs (default ``TUNEFORGE_HOME/hpo/STUDY``).
        threads: torch threads per trial process.
        progress: Receives trial outcomes and the trial counts.
        stop: When set (Ctrl-C), no new trial starts; running ones finish.

    Raises:
        ConfigError: A bad search file, checked before any trial.
        ConflictError / NotFoundError: The study exists (without ``resume``) or not (with it).
    """
    loaded = load_search(search)
    output = Path(output or study_folder(settings, check_study_name(study)))
    if resume:  # a resumed study keeps writing where it started
        output = Path(load_study(study, settings=settings).user_attrs.get("output", output))
    result = run_local_study(loaded, name=study, settings=settings, output=output, resume=resume, threads=threads,
                             progress=progress, stop=stop)
    stored = load_study(study, settings=settings)
    if result.counts.done >= loaded.config.n_trials:
        set_state(stored, "finished")
    progress(ProgressEvent(ProgressKind.STAGE, f"writing outputs to {output}"))
    return result, write_outputs(stored, loaded, folder=output)


def study_outputs(name: str, *, settings: Settings, folder: Path | None = None) -> StudyOutputs:
    """(Re)write a stored study's outputs (best.yaml, trials.csv, summary.md, plots)."""
    study = load_study(name, settings=settings)
    folder = folder or Path(study.user_attrs.get("output") or study_folder(settings, name))
    return write_outputs(study, stored_search(study), folder=folder)


def best(name: str, *, settings: Settings, train: bool = False, output: Path | None = None,
         progress: ProgressCallback = no_progress) -> tuple[Path, TrainResult | None]:
    """Write the best config of a study as YAML and, with ``train``, train it to completion.

    Returns:
        The YAML file, and the training result when trained.

    Raises:
        NotFoundError: No such study, or no completed trial.
    """
    from tuneforge.services.training import train as train_config
    from tuneforge.storage.files import atomic_write_text

    import yaml

    study = load_study(name, settings=settings)
    config = best_config(study, stored_search(study))
    folder = Path(study.user_attrs.get("output") or study_folder(settings, name))
    path = output or folder / "best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))
    if not train:
        return path, None
    config["output_dir"] = str(folder / "best-run")
    return path, train_config(config, settings=settings, overwrite=True, progress=progress)


def dashboard_storage(name: str, *, settings: Settings) -> str:
    """The storage URL optuna-dashboard opens for study ``name`` (checks the study and the package).

    Raises:
        MissingDependencyError: optuna-dashboard is not installed.
        NotFoundError: No such study.
    """
    try:
        import optuna_dashboard  # noqa: F401
    except ImportError:
        raise MissingDependencyError("optuna-dashboard", extra="hpo-dashboard",
                                     purpose="'tuneforge tune dashboard'") from None
    load_study(name, settings=settings)
    return studies_url(settings)


def study_view(study: optuna.Study, *, trials: bool = True) -> dict[str, Any]:
    """A study as the API and ``tune status`` show it: state, counts, best, and its trials."""
    from tuneforge.hpo.outputs import best_trials

    counts = study_counts(study)
    state = study.user_attrs.get("state")
    n_trials = (study.user_attrs.get("search") or {}).get("n_trials")
    if state == "running" and n_trials and counts.done >= n_trials and not counts.running:
        state = "finished"
    view: dict[str, Any] = {
        "name": study.study_name, "state": state, "project": study.user_attrs.get("project"),
        "directions": [d.name.lower() for d in study.directions], "search": study.user_attrs.get("search"),
        "complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed, "running": counts.running,
        "waiting": counts.waiting, "best": None,
    }
    if counts.complete:
        view["best"] = [{"number": t.number, "values": t.values, "params": t.params} for t in best_trials(study)]
    if trials:
        view["trials"] = [_trial_view(t, sign=-1.0 if view["directions"][0] == "maximize" else 1.0)
                          for t in study.get_trials(deepcopy=False)]
    return view


def _trial_view(trial: optuna.trial.FrozenTrial, *, sign: float) -> dict[str, Any]:
    """A trial: outcome, parameters, times, and the eval losses it reported (``[step, loss]``, for the curves)."""
    start, end = trial.datetime_start, trial.datetime_complete
    return {"number": trial.number, "state": trial.state.name.lower(), "values": trial.values, "params": trial.params,
            "steps": trial.user_attrs.get("steps"), "job_id": trial.user_attrs.get("job_id"),
            "error": trial.user_attrs.get("error"),
            "started_at": start.timestamp() if start else None, "finished_at": end.timestamp() if end else None,
            "duration": (end - start).total_seconds() if start and end else None,
            # the callback reports the eval loss negated when the study maximizes (see hpo.callbacks)
            "intermediate": [[step, sign * value] for step, value in sorted(trial.intermediate_values.items())]}


def study_importances(study: optuna.Study) -> dict[str, Any]:
    """fANOVA parameter importances of the complete trials, one mapping per objective (none below 2 trials).

    Returns:
        ``{"complete": N, "objectives": [{"metric": ..., "importances": {param: share}}], "error": None}``;
        ``error`` says why there are none when Optuna cannot compute them (e.g. a single parameter value).
    """
    import optuna
    from optuna.trial import TrialState

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    metrics = [o.get("metric") for o in (study.user_attrs.get("search") or {}).get("objective") or []]
    result: dict[str, Any] = {"complete": complete, "objectives": [], "error": None}
    if complete < 2:
        return result
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    single = len(study.directions) == 1
    try:
        for index in range(len(study.directions)):
            target = None if single else (lambda t, i=index: t.values[i])
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
            metric = metrics[index] if index < len(metrics) else f"objective {index}"
            shares = {param: float(share) for param, share in importances.items()}  # numpy floats -> JSON
            result["objectives"].append({"metric": metric, "importances": shares})
    except (ValueError, RuntimeError) as exc:  # e.g. every trial sampled the same value
        result["error"] = str(exc)
    return result


# --- platform ------------------------------------------------------------------------------------------
class StudyRequest(BaseModel):
    """``POST /api/v1/hpo/studies``: a search whose ``base`` is the training config itself (data as file ids)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Study name (1-64 letters, digits, '-', '_', '.').")
    search: dict[str, Any] = Field(description="The search file's fields; 'base' is a training config mapping "
                                   "(model: a base model name; data: file or dataset ids).")
    priority: int = Field(0, ge=-1000, le=1000, description="Priority of the trial jobs.")


def create_platform_study(platform: Platform, *, project: str, request: StudyRequest) -> dict[str, Any]:
    """Create the study and queue one ``hpo_trial`` job per trial; any worker runs them.

    Raises:
        ConfigError: The search does not validate against its base config (before any job is queued).
        ConflictError: A study of that name exists.
        NotFoundError: Unknown base model, file or dataset.
    """
    name = check_study_name(request.name)
    search = _platform_search(platform, request.search, project=project, name=name)
    study = create_study(search, name=name, settings=platform.settings, output=study_folder(platform.settings, name),
                         extra={"project": project, "priority": request.priority,
                                "request_base": request.search.get("base")})  # ids and names, for train best
    _queue_trials(platform, study, project=project, count=search.config.n_trials)
    return study_view(study)


def _platform_search(platform: Platform, data: dict[str, Any], *, project: str, name: str) -> LoadedSearch:
    """The search with its base model resolved and its data ids linked into the study's data folder."""
    from tuneforge.services.catalog import resolve_base_model
    from tuneforge.services.files import input_file

    base = data.get("base")
    if not isinstance(base, dict):
        raise ConfigError("search.base must be a training config (a mapping)", field="search.base")
    folder = platform.settings.data_dir(f"hpo-{name}")
    base = {**base, "model": resolve_base_model(platform, str(base.get("model", "")))}
    linked = {k: input_file(platform, v, project=project, target=folder / f"data_{k}", field=f"search.base.data.{k}")
              for k, v in (base.get("data") or {}).items() if k in ("train", "eval") and isinstance(v, str)}
    base["data"] = {**(base.get("data") or {}), **linked}
    objectives = []
    for i, objective in enumerate(data.get("objective") or []):
        if isinstance(objective, dict) and isinstance(objective.get("data"), str):
            objective = {**objective, "data": input_file(platform, objective["data"], project=project,
                                                         target=folder / f"objective_{i}",
                                                         field=f"search.objective.{i}.data")}
        objectives.append(objective)
    return search_from_mapping({**data, "objective": objectives}, base=base)


def _queue_trials(platform: Platform, study: optuna.Study, *, project: str, count: int) -> list[JobRecord]:
    from tuneforge.services.jobs import add_job, new_job_id
    from tuneforge.storage.records import JobRecord, JobStatus

    base_model = study.user_attrs["base"]["model"]
    jobs = []
    for _ in range(count):
        job = JobRecord(id=new_job_id("hpo_trial"), project=project, model=base_model, kind="hpo_trial",
                        config={"study": study.study_name}, priority=int(study.user_attrs.get("priority", 0)),
                        status=JobStatus.QUEUED, request={"api": "native", "study": study.study_name})
        jobs.append(add_job(platform, job, message=f"Trial job of study {study.study_name} queued"))
    return jobs


def get_platform_study(platform: Platform, name: str, *, project: str) -> optuna.Study:
    """The project's study ``name``; raises NotFoundError (another project's study is not found either)."""
    study = load_study(name, settings=platform.settings)
    if study.user_attrs.get("project") != project:
        raise NotFoundError(f"no study '{name}'", hint="GET /api/v1/hpo/studies lists the project's studies")
    return study


def train_best_job(platform: Platform, name: str, *, project: str, priority: int = 0) -> JobRecord:
    """Queue a normal fine-tuning job of the best config of the project's study ``name`` (the study's base config as
    it was sent, its file ids and model name included, with the best trial's values): ``tune best NAME --train``
    on the platform.

    Raises:
        NotFoundError: No such study, no completed trial yet, or a file of the base config was deleted since.
        ConflictError: A study created before the platform kept its base config as sent.
    """
    from tuneforge.config import TrainConfig
    from tuneforge.config.loader import validate_config
    from tuneforge.hpo.outputs import best_trials
    from tuneforge.services.jobs import create_train_job, event

    study = get_platform_study(platform, name, project=project)
    base = study.user_attrs.get("request_base")
    if not isinstance(base, dict):
        raise ConflictError(f"study '{name}' does not keep the base config it was created with",
                            hint=f"run 'tuneforge tune best {name}' and submit the config it writes")
    config = best_config(study, LoadedSearch(config=stored_search(study).config, base=base))
    config.pop("output_dir", None)  # the job's own run folder
    job = create_train_job(platform, project=project, config=validate_config(config, TrainConfig), priority=priority)
    trial = best_trials(study)[0]
    event(platform, job.id, f"The best config of study {name}: trial {trial.number} (values {trial.values}, "
          f"params {trial.params})")
    return job


def list_platform_studies(platform: Platform, *, project: str) -> list[dict[str, Any]]:
    """The project's studies (without their trials), oldest first."""
    import optuna

    from tuneforge.hpo.study import open_storage

    storage = open_storage(platform.settings)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    studies = [optuna.load_study(study_name=n, storage=storage) for n in names]
    return [study_view(s, trials=False) for s in studies if s.user_attrs.get("project") == project]


def _study_jobs(platform: Platform, name: str, *, project: str) -> list[JobRecord]:
    jobs, after = [], None
    while True:
        page = platform.store.list_jobs(project=project, kind="hpo_trial", after=after, limit=100)
        jobs += [j for j in page.data if j.config.get("study") == name]
        if not page.has_more or not page.data:
            return jobs
        after = page.data[-1].id


def control_platform_study(platform: Platform, name: str, *, project: str, action: str) -> dict[str, Any]:
    """Pause, resume or cancel a study: no new trial starts while paused; resume queues what is missing.

    Pause keeps running trials (they finish) and holds the queued trial jobs; cancel also stops the running ones.

    Raises:
        ConflictError: The action does not fit the study's state (resume of a running study, any of a cancelled one).
    """
    from tuneforge.services import jobs as job_ops
    from tuneforge.storage.records import JobStatus

    study = get_platform_study(platform, name, project=project)
    state = study.user_attrs.get("state")
    allowed = {"pause": ("running",), "resume": ("paused",), "cancel": ("running", "paused")}[action]
    if state not in allowed:
        raise ConflictError(f"study '{name}' is {state}: it cannot {action}",
                            hint=f"{action} applies to a {' or '.join(allowed)} study")
    jobs = _study_jobs(platform, name, project=project)
    if action != "cancel":  # a cancel marks the study after its jobs: a trial job that sees it ends cancelled
        set_state(study, {"pause": "paused", "resume": "running"}[action])
    operation = {"pause": job_ops.pause_job, "resume": job_ops.resume_job, "cancel": job_ops.cancel_job}[action]
    applies = {"pause": (JobStatus.QUEUED,), "resume": (JobStatus.PAUSED,),
               "cancel": (JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.RUNNING)}[action]
    for job in jobs:
        if job.status in applies:
            try:
                operation(platform, job.id, project=project)
            except ConflictError:
                pass  # a worker claimed it (or it ended) meanwhile: a running trial job finishes its trial
    if action == "cancel":
        set_state(study, "cancelled")
    if action == "resume":
        search = stored_search(study)
        counts = study_counts(study)
        queued = sum(1 for j in jobs if j.status in (JobStatus.QUEUED, JobStatus.PAUSED))  # queued again above
        asked = {t.user_attrs.get("job_id") for t in study.get_trials(deepcopy=False)}
        starting = sum(1 for j in jobs if j.status is JobStatus.RUNNING and j.id not in asked)  # will ask for one
        missing = counts.needed(search.config.n_trials) + counts.waiting - queued - starting
        _queue_trials(platform, study, project=project, count=max(missing, 0))
    return study_view(load_study(name, settings=platform.settings))

