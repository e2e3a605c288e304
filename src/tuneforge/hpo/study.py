"""Optuna studies in the platform's database: storage, create / resume, one trial, and the study's counts.

A study lives in Optuna's RDB storage on the platform's database (``Settings.database_url``): on PostgreSQL in
the schema ``optuna`` of the same database, on SQLite in the file ``studies.db`` beside ``tuneforge.db`` (both
tuneforge and Optuna keep an Alembic version table, so their tables cannot share one namespace). Any process
that opens the same settings sees the same study: ``--resume`` after a kill, several workers on one study.

The heartbeat: every trial process records a heartbeat; a trial whose process died is failed after
``Settings.stale_after_seconds`` and retried (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`)
by the next process that asks for a trial, with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConflictError, MissingDependencyError, NotFoundError, TuneforgeError
from tuneforge.storage.engine import normalize_url

if TYPE_CHECKING:
    import optuna

    from tuneforge.hpo.space import LoadedSearch
    from tuneforge.settings import Settings

SCHEMA = "optuna"  # the PostgreSQL schema of the studies
STATES = ("running", "paused", "cancelled", "finished")  # a study's ``state`` user attribute


def studies_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the study storage for ``settings`` (see the module docstring)."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///"))
        return f"sqlite:///{db.with_name('studies.db')}"
    return normalize_url(url)


def open_storage(settings: Settings) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats and retries of trials whose process died."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("optuna", extra="hpo", purpose="hyperparameter search") from None
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = studies_url(settings)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 60}  # several trial processes write one file
    else:
        kwargs["connect_args"] = {"options": f"-csearch_path={SCHEMA}"}
    interval = max(1, int(settings.heartbeat_seconds))
    attempt = 0
    while True:
        try:
            if not url.startswith("sqlite"):
                _create_schema(url)
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8; what we need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=interval,
                    grace_period=max(interval + 1, int(settings.stale_after_seconds)),
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                )
        except sqlalchemy.exc.DBAPIError as exc:
            # Trial processes that start together create Optuna's schema at once: the loser's CREATE TABLE finds the
            # winner's table (SQLite: "table studies already exists"), its alembic stamp the winner's row (UNIQUE
            # constraint failed: alembic_version.version_num), or PostgreSQL's CREATE SCHEMA IF NOT EXISTS the
            # winner's pg_namespace row. The schema exists now: open it again (tests/integration/test_hpo_storage_race.py).
            if not isinstance(exc, sqlalchemy.exc.IntegrityError) and "already exists" not in str(exc):
                raise
            attempt += 1
            if attempt == 5:
                raise
            time.sleep(0.2 * attempt)


def _create_schema(url: str) -> None:
    """PostgreSQL: the schema that keeps Optuna's tables apart from the Store's."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    finally:
        engine.dispose()


def search_digest(search: LoadedSearch) -> str:
    """A hash of what a study searches (space, objectives, base config): a resume must search the same."""
    fields = search.config.model_dump(mode="json", include={"space", "objective", "sampler", "pruner"})
    text = json.dumps({"search": fields, "base": search.base}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def create_study(search: LoadedSearch, *, name: str, settings: Settings, output: Path, resume: bool = False,
                 extra: dict[str, Any] | None = None) -> optuna.Study:
    """Create the study ``name`` (or, with ``resume``, open it again) in the platform's database.

    Args:
        search: The checked search.
        name: The study name.
        settings: Whose database holds it.
        output: The study's output folder (trial runs, best.yaml, plots).
        resume: Continue an existing study of that name.
        extra: More user attributes (the platform's project).

    Raises:
        ConflictError: The study exists (without ``resume``), or it searches something else.
        NotFoundError: ``resume`` of a study that does not exist.
    """
    import optuna

    from tuneforge.hpo.samplers import make_sampler

    make_sampler(search.config, seed=search.config.seed)  # a sampler that cannot be built fails before any trial
    storage = open_storage(settings)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if exists and not resume:
        raise ConflictError(f"study '{name}' exists already", hint="add --resume to continue it, or choose a new name")
    if resume and not exists:
        raise NotFoundError(f"no study '{name}' to resume", hint="run it once without --resume")
    digest = search_digest(search)
    if exists:
        study = optuna.load_study(study_name=name, storage=storage)
        if study.user_attrs.get("digest") != digest:
            raise ConflictError(f"study '{name}' searched another space, objective or base config",
                                hint="resume with the search file it started with, or start a new study")
        study.set_user_attr("search", search.config.model_dump(mode="json"))  # the budget may change on resume
        set_state(study, "running")
        return study
    study = optuna.create_study(study_name=name, storage=storage, directions=search.config.directions)
    attrs = {"digest": digest, "search": search.config.model_dump(mode="json"), "base": search.base,
             "output": str(output), "state": "running", **(extra or {})}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


def load_study(name: str, *, settings: Settings, sampler: Any = None, pruner: Any = None) -> optuna.Study:
    """The stored study ``name`` (with this process's own sampler and pruner).

    Raises:
        NotFoundError: No study of that name.
    """
    import optuna

    storage = open_storage(settings)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise NotFoundError(f"no study '{name}'", hint=f"studies: {', '.join(names) or 'none yet'}") from None


def stored_search(study: optuna.Study) -> LoadedSearch:
    """The search a study was created with (from its user attributes)."""
    from tuneforge.hpo.space import LoadedSearch, SearchConfig

    attrs = study.user_attrs
    return LoadedSearch(config=SearchConfig.model_validate(attrs["search"]), base=attrs["base"])


def set_state(study: optuna.Study, state: str) -> None:
    """Mark a study running, paused, cancelled or finished (no new trial starts unless it is running)."""
    if state not in STATES:
        raise ValueError(f"unknown study state {state!r}")
    study.set_user_attr("state", state)


@dataclass(frozen=True)
class StudyCounts:
    """Where a study stands.

    Attributes:
        complete: Trials that finished with values.
        pruned: Trials the pruner stopped.
        failed: Trials that failed and will not be retried.
        running: Trials running now (in any process that shares the study).
        waiting: Trials queued to run (retries of trials whose process died).
        best: The best value so far (single objective), else None.
    """

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best: float | None

    @property
    def done(self) -> int:
        """Trials that count towards ``n_trials``."""
        return self.complete + self.pruned + self.failed

    def needed(self, n_trials: int) -> int:
        """New trials to start to reach ``n_trials`` (queued retries are taken before new trials)."""
        return n_trials - self.done - self.running - self.waiting


def study_counts(study: optuna.Study) -> StudyCounts:
    """Count the study's trials by state; a failed trial that was retried counts only through its retry."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    states = [t.state for t in trials]
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and t.number not in retried)
    best = None
    if len(study.directions) == 1 and TrialState.COMPLETE in states:
        best = study.best_value
    return StudyCounts(complete=states.count(TrialState.COMPLETE), pruned=states.count(TrialState.PRUNED),
                       failed=failed, running=states.count(TrialState.RUNNING),
                       waiting=states.count(TrialState.WAITING), best=best)


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose process stopped its heartbeat; the retry callback queues them again."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def run_one_trial(name: str, *, settings: Settings, seed: int, run_dir: Path | None = None, progress: Any = None,
                  extra_callbacks: list[Any] | None = None, on_trial: Any = None) -> int | None:
    """Run one trial of the stored study ``name`` in this process (a queued retry first), unless it is full.

    Args:
        name: The study.
        settings: Its database, the model cache.
        seed: The seed of this process's sampler (distinct per process, or two processes sample alike).
        run_dir: Where the trial trains (default: ``trials/trial-NNNN`` under the study's output folder).
        progress: Receives the trial's training and evaluation events.
        extra_callbacks: More TrainerCallbacks.
        on_trial: Called with the trial once it is asked (a job records its id on it).

    Returns:
        The trial's number, or None when the study needs no more trials (full, paused or cancelled).
    """
    import optuna

    from tuneforge.hpo.objective import run_trial
    from tuneforge.hpo.samplers import make_pruner, make_sampler
    from tuneforge.progress import no_progress

    probe = load_study(name, settings=settings)
    search = stored_search(probe)
    study = load_study(name, settings=settings, sampler=make_sampler(search.config, seed=seed),
                       pruner=make_pruner(search.config))
    fail_stale(study)
    counts = study_counts(study)
    if study.user_attrs.get("state") != "running" or (counts.needed(search.config.n_trials) <= 0
                                                       and not counts.waiting):
        return None
    output = Path(study.user_attrs["output"])
    numbers: list[int] = []

    def objective(trial: optuna.Trial) -> list[float]:
        numbers.append(trial.number)
        if on_trial is not None:
            on_trial(trial)
        try:
            return run_trial(trial, search, settings=settings, output=output, run_dir=run_dir,
                             progress=progress or no_progress,
                             extra_callbacks=extra_callbacks or ())
        except TuneforgeError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        except Exception as exc:
            if not isinstance(exc, optuna.TrialPruned):
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    study.optimize(objective, n_trials=1, catch=(Exception,))
    return numbers[0] if numbers else None
