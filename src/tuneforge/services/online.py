"""Incremental updates (online learning): continue the live version's adapter on the records a dataset gained,
gate the result against the live version on a held-out suite, then let it go live (or not).

``tuneforge update NAME --from production --data DATASET --since V`` (``cli/update.py``), the ``serve_update``
job kind (``services/update_kind.py``) and ``POST /api/v1/updates`` all call :func:`update_model` with one
:class:`UpdateRequest`. An update:

1. resolves ``NAME@from`` (the live version, an adapter) and writes the dataset's records added since version
   ``since`` plus a ``replay`` share of older ones (``services.data_reports.materialize_data``);
2. trains the live version's own config (its base, method and options) on them, starting from the live
   adapter's weights (:func:`adapter_init_callback`), not from a new adapter; preference pairs train with DPO;
3. registers the result as version N+1 linked to its parent version and the dataset version;
4. evaluates parent and update on the suite and applies the regression gate (``--max-drop``); a version that
   fails is marked ``scores.gate.status = failed`` (never served, see ``services.registry.gate_failed``) and no
   alias moves; one that passes goes live as ``staging``, ``production`` or a split of the ``from`` alias.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.data.fields import record_hash
from tuneforge.errors import ConfigError
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.registry.datasets import list_versions, parse_ref
from tuneforge.services.datasets import records_of
from tuneforge.services.platform import Platform
from tuneforge.services.registry import (
    attach_scores, loadable_path, register_update, resolve_model_version, set_alias,
)
from tuneforge.storage.records import ModelVersionRecord
from tuneforge.storage.rundir import COMPLETED, RunDir

PREFERENCE_KEYS = ({"prompt", "chosen", "rejected"}, {"input", "preferred_output", "non_preferred_output"})


class UpdateRequest(BaseModel):
    """What an update does (the CLI's options, the API's body and the ``serve_update`` job's config)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(description="Registered model to update.")
    from_alias: str = Field("production", alias="from", description="Alias of the live version whose adapter is "
                            "continued and that the gate compares against.")
    dataset: str = Field(description="Data set with the new records: NAME (its newest version) or NAME:V.")
    since: int = Field(ge=1, description="Train on the records added after this version of the data set.")
    replay: float = Field(0.2, ge=0, le=1, description="Share of the older records mixed back in, against forgetting.")
    suite: Any = Field(description="The held-out suite of the gate: a suite YAML path or a suite mapping "
                       "(tasks with their test data, metrics).")
    max_drop: list[str] = Field(default_factory=lambda: ["exact_match=0.02"], description="Allowed drop by metric "
                                "against the live version (METRIC=VALUE items).")
    go_live: str = Field("staging", description="Where a version that passes the gate goes: 'staging', "
                         "'production', or 'split:SHARE' (that share of the 'from' alias's traffic).")
    overrides: list[str] = Field(default_factory=list, description="--set KEY=VALUE overrides of the training config "
                                 "(e.g. train.epochs=2).")
    seed: int = Field(0, description="Seed of the replay sample.")

    @field_validator("go_live")
    @classmethod
    def _go_live(cls, value: str) -> str:
        go_live_target(value)
        return value


def go_live_target(value: str) -> tuple[str, float | None]:
    """``staging`` / ``production`` -> (alias, None); ``split:0.1`` -> ("split", 0.1).

    Raises:
        ConfigError: Another value, or a share outside (0, 1).
    """
    if value in ("staging", "production"):
        return value, None
    kind, _, share = value.partition(":")
    try:
        number = float(share)
    except ValueError:
        number = -1.0
    if kind != "split" or not 0 < number < 1:
        raise ConfigError(f"--go-live {value!r} is not staging, production or split:SHARE", field="go_live",
                          hint="e.g. --go-live staging, --go-live production or --go-live split:0.1")
    return "split", number


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the parent, the new version, the gate's verdict and where the version went live."""

    parent: ModelVersionRecord
    version: ModelVersionRecord
    passed: bool
    gate: dict[str, Any]
    live: str | None
    data: dict[str, Any]
    seconds: float
    task: str = "sft"
    timings: dict[str, float] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        """The result as JSON (the CLI's ``--json``, the job's result)."""
        return {"parent": self.parent.ref, "version": self.version.ref, "passed": self.passed, "gate": self.gate,
                "live": self.live, "data": self.data, "task": self.task, "seconds": round(self.seconds, 2),
                "timings": {k: round(v, 2) for k, v in self.timings.items()}}


# --- new records --------------------------------------------------------------------------------------
def newest_data_version(platform: Platform, dataset: str, *, project: str) -> int:
    """The version ``dataset`` names (``NAME:V``), or the newest version of ``NAME``."""
    ref = parse_ref(dataset)
    if ref.version is not None:
        return ref.version
    return list_versions(platform.store, ref.name, project=project)[-1].version


def count_new_records(platform: Platform, dataset: str, *, since: int, project: str) -> int:
    """How many records the data set's version (``NAME:V`` or the newest) has that version ``since`` lacks."""
    name = parse_ref(dataset).name
    number = newest_data_version(platform, dataset, project=project)
    if number <= since:
        return 0
    left = Counter(record_hash(r) for r in records_of(platform, f"{name}:{since}", project=project)[1])
    new = 0
    for record in records_of(platform, f"{name}:{number}", project=project)[1]:
        key = record_hash(record)
        new += 0 if left[key] else 1
        left[key] -= 1 if left[key] else 0
    return new


def check_update(platform: Platform, request: UpdateRequest, *, project: str) -> ModelVersionRecord:
    """Refuse an update that cannot run before any cycle starts: the live version, the data set and a suite file
    are checked (a loop of skipped cycles on a misspelled name tells the user nothing). Returns the live version.

    Raises:
        NotFoundError: Unknown model, alias or data set.
        ConfigError: The live version is not an adapter, or the suite file is missing or invalid.
    """
    from tuneforge.evaluation.suites import load_suite

    parent = live_version(platform, request.name, alias=request.from_alias, project=project)
    newest_data_version(platform, request.dataset, project=project)  # the data set exists
    if isinstance(request.suite, (str, Path)):
        load_suite(request.suite)
    return parent


# --- the update -----------------------------------------------------------------------------------------
def update_model(platform: Platform, request: UpdateRequest, *, project: str, actor: str, run_dir: str | Path,
                 progress: ProgressCallback = no_progress, resume: bool = False, job_id: str | None = None,
                 extra_callbacks: list[Any] | None = None, check: Callable[[], None] = lambda: None) -> UpdateResult:
    """Train, register, gate and (when it passes) deploy one incremental update (see the module's docstring).

    ``run_dir`` is the training run's folder; with ``resume`` a run that completed there (a job's earlier attempt)
    is registered without training again. ``check`` runs before each registry write (a job's lease check).

    Raises:
        NotFoundError: Unknown model, alias or data set version.
        ConfigError: The live version is not an adapter, ``since`` is not older than the data, a bad suite or
            ``max_drop``.
        DataError: No new records and no replay.
    """
    from tuneforge.services.data_reports import materialize_data
    from tuneforge.training.run import run_training

    started = time.perf_counter()
    parent = live_version(platform, request.name, alias=request.from_alias, project=project)
    data_ref = f"{parse_ref(request.dataset).name}:{newest_data_version(platform, request.dataset, project=project)}"
    data = materialize_data(platform, data_ref, project=project, since=request.since, replay=request.replay,
                            seed=request.seed)
    config = update_config(parent, data_path=data.path, data_ref=data_ref, request=request, output_dir=run_dir)
    progress(ProgressEvent(ProgressKind.STAGE, f"updating {parent.ref} on {data.records} records of {data_ref} "
                           f"(since {request.since}, replay {request.replay}, {config.task.name})"))
    callbacks = [adapter_init_callback(parent.artifact_path), *(extra_callbacks or [])]
    version = registered_update(platform, run_dir=run_dir, name=request.name, data_ref=data_ref, project=project,
                                job_id=job_id) if resume else None
    if version is not None and version.parent_version is not None:  # the alias may have moved to it since
        parent = platform.store.get_model_version(project=project, name=version.name, version=version.parent_version)
    if version is None:
        if not (resume and (RunDir(Path(run_dir)).read_marker() or {}).get("status") == COMPLETED):
            run_training(config, settings=platform.settings, resume=resume, overwrite=not resume, progress=progress,
                         extra_callbacks=callbacks)
        check()
        version = register_update(platform, run_dir, parent=parent, data=data.lineage(), created_by=actor,
                                  job_id=job_id)
        progress(ProgressEvent(ProgressKind.MESSAGE, f"registered {version.ref} (from {parent.ref}, {data_ref})"))
    else:
        progress(ProgressEvent(ProgressKind.MESSAGE, f"{version.ref} was registered by an earlier attempt of this "
                               "cycle: continuing with its gate"))
    trained = time.perf_counter()
    gate = version.scores.get("gate")
    if not (isinstance(gate, dict) and gate.get("status") in ("passed", "failed")):
        gate = run_gate(platform, parent=parent, version=version, request=request, progress=progress)
    gated = time.perf_counter()
    check()
    live = go_live(platform, parent=parent, version=version, request=request, project=project, actor=actor) \
        if gate["status"] == "passed" else None
    progress(ProgressEvent(ProgressKind.MESSAGE, f"gate {gate['status']} for {version.ref}"
                           + (f": live as {live}" if live else ": no alias moved"), data={"gate": gate}))
    version = platform.store.get_model_version(project=project, name=version.name, version=version.version)
    return UpdateResult(parent, version, gate["status"] == "passed", gate, live, data.lineage(),
                        time.perf_counter() - started, config.task.name,
                        {"train": trained - started, "gate": gated - trained, "go_live": time.perf_counter() - gated})


def registered_update(platform: Platform, *, run_dir: str | Path, name: str, data_ref: str, project: str,
                      job_id: str | None) -> ModelVersionRecord | None:
    """The version this cycle registered already (an attempt killed after its registration): the update of
    ``name`` registered from the same run folder by the same job, on the same data set version."""
    folder = str(Path(run_dir).expanduser().resolve())
    for version in platform.store.list_model_versions(project=project, name=name, job_id=job_id):
        source = version.source
        if version.job_id == job_id and source.get("updated_from") and source.get("run_dir") == folder \
                and (source.get("data") or {}).get("ref") == data_ref:
            return version
    return None


def live_version(platform: Platform, name: str, *, alias: str, project: str) -> ModelVersionRecord:
    """The version ``name@alias`` points at; it must be an adapter (an update continues its weights).

    Raises:
        NotFoundError: Unknown model or alias.
        ConfigError: The version is not an adapter.
    """
    parent = resolve_model_version(platform, f"{name}@{alias}", project=project)
    assert parent is not None  # an explicit name@alias resolves or raises
    if parent.kind != "adapter":
        raise ConfigError(f"{name}@{alias} is {parent.ref}, a {parent.kind} version: an update continues an adapter",
                          field="from", hint="point the alias at an adapter version, or train a new one")
    return parent


def update_config(parent: ModelVersionRecord, *, data_path: Path, data_ref: str, request: UpdateRequest,
                  output_dir: str | Path) -> Any:
    """The parent's training config (model, method, options) on the new data: SFT, or DPO for preference pairs."""
    from tuneforge.services.training import as_train_config

    base = dict(parent.config) or config_from_adapter(parent)
    data = {**(base.get("data") or {}), "train": [{"path": str(data_path), "dataset": data_ref,
                                                    "since": request.since, "replay": request.replay}], "eval": None}
    config = {**base, "data": data, "output_dir": str(output_dir)}
    if is_preference(data_path):
        config["task"] = "dpo"
        config["data"] = {**data, "format": "auto"}  # pairs, whatever format the parent's records had
    elif task_name(config) == "dpo":
        config["task"] = "sft"  # a DPO parent updated with plain records
    train = dict(config.get("train") or {})
    train.pop("eval_steps", None), train.pop("early_stopping_patience", None)  # no eval data in an update
    config["train"] = train
    return as_train_config(config, overrides=request.overrides)


def task_name(config: dict[str, Any]) -> str:
    """The task of a config mapping (``task: dpo`` or ``task: {name: dpo, ...}``; default sft)."""
    task = config.get("task") or "sft"
    return task if isinstance(task, str) else str(task.get("name", "sft"))


def config_from_adapter(parent: ModelVersionRecord) -> dict[str, Any]:
    """A LoRA config for a version registered from a bare adapter folder (no training config kept)."""
    adapter = json.loads((Path(parent.artifact_path) / "adapter_config.json").read_text())
    if adapter.get("peft_type") != "LORA":
        raise ConfigError(f"{parent.ref} is a {adapter.get('peft_type')} adapter without its training config",
                          field="from", hint="register the run directory that trained it instead")
    method = {"name": "lora", "r": adapter["r"], "alpha": adapter["lora_alpha"], "dropout": adapter["lora_dropout"],
              "target_modules": sorted(adapter["target_modules"])}
    return {"model": parent.base_model or adapter["base_model_name_or_path"], "method": method, "data": {}}


def is_preference(path: Path) -> bool:
    """Whether a JSONL file holds preference pairs (its first record has chosen / rejected answers)."""
    with path.open() as handle:
        first = json.loads(handle.readline() or "{}")
    return any(keys <= first.keys() for keys in PREFERENCE_KEYS)


def adapter_init_callback(adapter: str | Path) -> Any:
    """A TrainerCallback that loads ``adapter``'s weights into the freshly wrapped PEFT model before the first
    step (the update continues the live adapter). A run resumed from its own checkpoint keeps that checkpoint.

    Raises:
        ConfigError: The adapter's weights do not fit the model (another rank, targets or base).
    """
    from transformers import TrainerCallback

    class AdapterInit(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
            if state.global_step == 0 and model is not None:
                load_adapter_weights(model, adapter)
            return control

    return AdapterInit()


def load_adapter_weights(model: Any, adapter: str | Path) -> None:
    """Copy a saved adapter's weights into a PEFT model's active adapter (in place: the optimizer keeps them)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(adapter), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k or "modules_to_save" in k]
    if unexpected:
        raise ConfigError(f"the live adapter {adapter} does not fit the model being updated ({len(unexpected)} "
                          f"weights without a place, e.g. {unexpected[0]})", field="method",
                          hint="keep the live version's method options (r, target_modules) in the update")


# --- gate and deploy --------------------------------------------------------------------------------------
def run_gate(platform: Platform, *, parent: ModelVersionRecord, version: ModelVersionRecord, request: UpdateRequest,
             progress: ProgressCallback = no_progress) -> dict[str, Any]:
    """Evaluate the live version and the update on the suite; the gate's verdict is attached to the update's
    scores (``gate``: status, against, regressions, both reports' metrics), with the update's own scores."""
    from tuneforge.evaluation.compare import parse_max_drop
    from tuneforge.services.evaluation import check_regression, evaluate

    limits = parse_max_drop(request.max_drop)  # a bad item fails before any evaluation
    reports = {}
    for label, model in (("live", parent), ("update", version)):
        progress(ProgressEvent(ProgressKind.STAGE, f"gate: evaluating {label} {model.ref}"))
        reports[label] = evaluate(loadable_path(model), request.suite, settings=platform.settings, store=False)
    regressions = check_regression(reports["update"], baseline=reports["live"], max_drop=limits)
    figures = {label: {t.name: t.metrics for t in r.tasks} for label, r in reports.items()}
    gate = {"status": "failed" if regressions else "passed", "against": parent.ref, "max_drop": limits,
            "regressions": [r.describe() for r in regressions], **figures}
    scores = {t.name: {"examples": t.examples, **t.metrics} for t in reports["update"].tasks}
    attach_scores(platform, version, {**scores, "gate": gate})
    return gate


def go_live(platform: Platform, *, parent: ModelVersionRecord, version: ModelVersionRecord, request: UpdateRequest,
            project: str, actor: str) -> str:
    """Move ``staging`` or ``production`` to the update, or split the ``from`` alias's traffic; what went live.

    Raises:
        ConfigError: ``split:SHARE`` on a platform without A/B splits.
    """
    alias, share = go_live_target(request.go_live)
    current = {a.alias: a for a in platform.store.list_model_aliases(project=project, name=version.name)}
    if share is None:
        if alias in current and current[alias].version == version.version and not current[alias].weights:
            return f"{version.name}@{alias}"  # an earlier attempt of the cycle moved it already
        set_alias(platform, version.name, version.version, alias, project=project, actor=actor)
        return f"{version.name}@{alias}"
    from tuneforge.services.registry import set_split
    weights = {parent.version: round(1 - share, 6), version.version: share}
    if request.from_alias in current and current[request.from_alias].split() == weights:
        return f"{version.name}@{request.from_alias} split {weights}"
    set_split(platform.store, project=project, name=version.name, alias=request.from_alias, weights=weights,
              actor=actor)
    return f"{version.name}@{request.from_alias} split {weights}"
