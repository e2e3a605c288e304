"""Model registry use cases: register versions, move and roll back aliases, lineage, retention; resolving
``name`` / ``name:3`` / ``name@alias`` lives in ``services.registry_refs`` and is re-exported here. The CLI
(``tuneforge registry``), the native API (``/api/v1/registry``), the job kinds and the serving engines call these
functions.

A version's artifact is copied once under ``$TUNEFORGE_HOME/artifacts/models/`` by the sha256 of its files
(``registry.models.store_folder``); the rows live in the Store.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import ConfigError, ConflictError, NotFoundError
from tuneforge.registry.models import (
    check_alias, check_name, file_sha256, kind_of_format, parse_ref, prune_candidates, store_folder,
)
from tuneforge.services.platform import Platform
from tuneforge.services.registry_refs import (  # noqa: F401 - re-exported: callers import them from here
    _require_model, _store, _unknown, gate_failed, get_version, loadable_path, resolve_model_version, version_of,
)
from tuneforge.settings import Settings
from tuneforge.storage.base import Store
from tuneforge.storage.files import folder_bytes
from tuneforge.storage.records import (
    AliasMoveRecord, ModelVersionRecord, VersionStatus, new_id, now,
)
from tuneforge.storage.rundir import COMPLETED, RunDir

ADAPTER_CONFIG = "adapter_config.json"


def models_root(settings: Settings) -> Path:
    """Where registered artifacts are stored, by sha256: ``$TUNEFORGE_HOME/artifacts/models``."""
    return settings.artifacts_dir / "models"


# --- registering --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """What a folder or file to register is: the artifact, its kind and base, and where it came from."""

    artifact: Path
    kind: str
    base_model: str
    source: dict[str, Any]
    config: dict[str, Any]
    scores: dict[str, Any]


def describe(path: str | Path) -> Candidate:
    """Read a run directory, a checkpoint of a run, an adapter or model folder, or a ``.gguf`` file.

    Raises:
        NotFoundError: Nothing registrable at ``path``.
        ConflictError: A run that has not completed.
    """
    path = Path(path).expanduser().resolve()
    run = RunDir(path)
    if run.is_run():
        return _from_run(run, path=None)
    if path.parent.name == "checkpoints" and RunDir(path.parent.parent).is_run():
        return _from_run(RunDir(path.parent.parent), path=path)
    if path.is_file() and path.suffix == ".gguf":
        return Candidate(path, "gguf", "", {"path": str(path)}, {}, {})
    if (path / ADAPTER_CONFIG).is_file():
        base = yaml.safe_load((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path") or ""
        return Candidate(path, "adapter", base, {"path": str(path)}, {}, {})
    if (path / "config.json").is_file():
        return Candidate(path, "full", "", {"path": str(path)}, {}, {})
    raise NotFoundError(f"nothing to register at {path}",
                        hint="pass a tuneforge run directory, one of its checkpoints, an adapter or model folder, or "
                        "a .gguf file")


def _from_run(run: RunDir, *, path: Path | None) -> Candidate:
    marker = run.read_marker() or {}
    if path is None and marker.get("status") != COMPLETED:
        raise ConflictError(f"run {run.root} has not completed (status: {marker.get('status')})",
                            hint="finish it with 'tuneforge train CONFIG --resume', or register one of its checkpoints")
    artifact = path or (run.adapter if run.has_adapter() else run.model)
    kind = "adapter" if (artifact / ADAPTER_CONFIG).is_file() else "full"
    config = yaml.safe_load(run.config.read_text()) if run.config.is_file() else {}
    summary = run.read_summary() if run.summary.is_file() and path is None else {}
    figures = {k: summary[k] for k in ("train_loss", "eval_loss", "final_loss") if summary.get(k) is not None}
    source = {"run_dir": str(run.root), "checkpoint": path.name if path else None,
              "base_model_name": marker.get("model")}
    return Candidate(artifact, kind, str(marker.get("base_model", "")), source, config or {},
                     {"training": figures} if figures else {})


def training_data_sha256(config: dict[str, Any]) -> str | None:
    """The sha256 of a training config's ``data.train`` file (or single source), when it is a file on this machine."""
    train = (config.get("data") or {}).get("train")
    train = train[0].get("path") if isinstance(train, list) and len(train) == 1 else train
    return file_sha256(train) if isinstance(train, str) and Path(train).is_file() else None


def register(platform: Platform, path: str | Path, *, project: str, name: str, created_by: str,
             job_id: str | None = None, fine_tuned_model: str | None = None) -> ModelVersionRecord:
    """Register what ``path`` holds (see :func:`describe`) as the next version of ``name``.

    Raises:
        ConfigError: An invalid name.
        NotFoundError, ConflictError: See :func:`describe`.
    """
    check_name(name)
    candidate = describe(path)
    source = {**candidate.source, **({"job_id": job_id} if job_id else {})}
    return _add(platform, candidate, project=project, name=name, created_by=created_by, source=source, job_id=job_id,
                fine_tuned_model=fine_tuned_model, dataset_sha256=training_data_sha256(candidate.config))


def register_compressed(platform: Platform, *, parent: ModelVersionRecord, output: str | Path,
                        report: dict[str, Any], created_by: str, job_id: str | None = None) -> ModelVersionRecord:
    """Register a compression output (``output/model``) as the next version of the parent's model, linked to it.

    The training lineage (config, dataset) is the parent's; the compression report's quality figures
    become the version's scores.
    """
    stage = (report.get("stages") or [{}])[-1]
    candidate = Candidate(Path(output) / "model", kind_of_format(stage.get("format", "")), parent.base_model,
                          {"compressed_from": parent.ref, "format": stage.get("format"), "output": str(output)},
                          {"recipe": report.get("recipe", {})}, {**stage.get("quality", {}),
                                                                  "compression": report.get("summary", {})})
    source = {**candidate.source, **({"job_id": job_id} if job_id else {})}
    return _add(platform, candidate, project=parent.project, name=parent.name, created_by=created_by, source=source,
                job_id=job_id, fine_tuned_model=None, dataset_sha256=parent.dataset_sha256,
                parent_version=parent.version)


def register_update(platform: Platform, path: str | Path, *, parent: ModelVersionRecord, data: dict[str, Any],
                    created_by: str, job_id: str | None = None) -> ModelVersionRecord:
    """Register an incremental update (a run that continued ``parent``'s adapter) as the next version of the
    parent's model, linked to it (``parent_version``) and to the dataset version it trained on (``data``, the
    lineage ``services.data_reports.MaterializedData.lineage`` gives; its ``sha256`` is the version's data sha)."""
    candidate = describe(path)
    source = {**candidate.source, "updated_from": parent.ref, "data": data, **({"job_id": job_id} if job_id else {})}
    return _add(platform, candidate, project=parent.project, name=parent.name, created_by=created_by, source=source,
                job_id=job_id, fine_tuned_model=None, dataset_sha256=data.get("sha256"), parent_version=parent.version)


def _add(platform: Platform, candidate: Candidate, *, project: str, name: str, created_by: str, source: dict,
         job_id: str | None, fine_tuned_model: str | None, dataset_sha256: str | None,
         parent_version: int | None = None) -> ModelVersionRecord:
    digest, stored = store_folder(candidate.artifact, root=models_root(platform.settings))
    record = ModelVersionRecord(
        id=new_id("mv"), project=project, name=name, kind=candidate.kind, artifact_path=str(stored),
        artifact_sha256=digest, base_model=candidate.base_model, size_bytes=folder_bytes(stored), source=source,
        config=candidate.config, dataset_sha256=dataset_sha256, scores=candidate.scores, job_id=job_id,
        fine_tuned_model=fine_tuned_model, parent_version=parent_version, created_by=created_by)
    added = platform.store.add_model_version(record)
    if not stored.is_dir():  # a prune removed the same bytes between the copy and the row: store them again
        store_folder(candidate.artifact, root=models_root(platform.settings))
    return added


def attach_scores(platform_or_store: Platform | Store, version: ModelVersionRecord,
                  scores: dict[str, Any]) -> ModelVersionRecord:
    """Merge evaluation scores (``{task: {metric: value}}``) into a version's scores."""
    return _store(platform_or_store).update_model_version(project=version.project, name=version.name,
                                                          version=version.version, scores=scores)


# --- aliases ------------------------------------------------------------------------------------------
def set_alias(platform: Platform, name: str, version: int, alias: str, *, project: str,
              actor: str) -> AliasMoveRecord:
    """Point ``alias`` at ``name:version`` (a deploy); the move is recorded with who and when.

    Raises:
        ConfigError: A malformed alias, or ``latest``.
        NotFoundError: Unknown model or version.
        ConflictError: The version was pruned.
    """
    check_alias(alias)
    _require_model(platform, name, project=project)
    return platform.store.move_model_alias(project=project, name=name, alias=alias, version=version, actor=actor)


def rollback_alias(platform: Platform, name: str, alias: str, *, project: str, actor: str) -> AliasMoveRecord:
    """Move ``alias`` back to where it pointed before its last move (repeat to go further back).

    Raises:
        NotFoundError: Unknown model or alias.
        ConflictError: Nothing earlier to go back to, or that version was pruned.
    """
    _require_model(platform, name, project=project)
    return platform.store.rollback_model_alias(project=project, name=name, alias=alias, actor=actor)


def set_split(store: Platform | Store, *, project: str, name: str, alias: str, weights: dict[int, float],
              actor: str) -> AliasMoveRecord:
    """Split the traffic of ``name@alias`` over versions by weight (an A/B test); ``{8: 1.0}`` ends a split
    (a plain move to 8). Recorded in the alias's history like any move; routing changes at the next request.

    Raises:
        ConfigError: Weights that do not sum to 1, or a malformed alias.
        NotFoundError: Unknown model or version.
        ConflictError: A version was pruned.
    """
    from tuneforge.registry.splits import check_weights

    check_alias(alias)
    weights = check_weights(weights)
    _require_model(store, name, project=project)
    store = _store(store)
    for number in weights:
        found = resolve_model_version(store, f"{name}:{number}", project=project)
        if found is not None and gate_failed(found):
            raise ConflictError(f"{found.ref} failed the regression gate of its update and is never served",
                                hint="split between versions that passed their gate")
    if len(weights) == 1:
        return store.move_model_alias(project=project, name=name, alias=alias, version=next(iter(weights)),
                                      actor=actor)
    return store.split_model_alias(project=project, name=name, alias=alias, weights=weights, actor=actor)


# --- views --------------------------------------------------------------------------------------------
def version_view(version: ModelVersionRecord, *, aliases: list[str] | None = None) -> dict[str, Any]:
    """A version as the CLI and the API show it: the record, its ``ref`` and the aliases that point at it."""
    return {**asdict(version), "status": str(version.status), "ref": version.ref, "aliases": aliases or []}


def list_registered(platform: Platform, *, project: str) -> list[dict[str, Any]]:
    """Registered models of a project: name, newest version, number of versions, aliases."""
    aliases: dict[str, dict[str, int]] = {}
    for alias in platform.store.list_model_aliases(project=project):
        aliases.setdefault(alias.name, {})[alias.alias] = alias.version
    out = []
    for model in platform.store.list_registered_models(project=project):
        versions = platform.store.list_model_versions(project=project, name=model.name)
        out.append({"name": model.name, "latest_version": model.latest_version, "versions": len(versions),
                    "stored": sum(v.status is VersionStatus.READY for v in versions),
                    "aliases": aliases.get(model.name, {}), "created_at": model.created_at})
    return out


def show(platform: Platform, ref: str, *, project: str) -> dict[str, Any]:
    """``name``: every version, the aliases and their moves; ``name:V`` / ``name@alias``: that version."""
    parsed = parse_ref(ref)
    if parsed is None:
        raise _unknown(f"no registered model '{ref}'", ref, [], hint="give NAME, NAME:VERSION or NAME@ALIAS")
    _require_model(platform, parsed.name, project=project)
    aliases = platform.store.list_model_aliases(project=project, name=parsed.name)
    pointing = {a.version: [b.alias for b in aliases if b.version == a.version] for a in aliases}
    if parsed.explicit:
        version = get_version(platform, ref, project=project)
        return version_view(version, aliases=pointing.get(version.version))
    versions = platform.store.list_model_versions(project=project, name=parsed.name)
    moves = platform.store.list_alias_moves(project=project, name=parsed.name)
    return {"name": parsed.name, "versions": [version_view(v, aliases=pointing.get(v.version)) for v in versions],
            "aliases": {a.alias: a.version for a in aliases}, "alias_moves": [asdict(m) for m in moves],
            "splits": {a.alias: a.split() for a in aliases if a.weights}}


def lineage(platform: Platform, ref: str, *, project: str) -> dict[str, Any]:
    """The chain of a version: version (and the versions it was compressed from) -> job / run -> config ->
    dataset sha256 -> base model."""
    chain = [get_version(platform, ref, project=project)]
    while chain[-1].parent_version is not None and len(chain) < 100:
        chain.append(platform.store.get_model_version(project=project, name=chain[-1].name,
                                                      version=chain[-1].parent_version))
    trained = chain[-1]
    job = None
    if trained.job_id:
        try:
            record = platform.store.get_job(trained.job_id, project=project)
            job = {"id": record.id, "kind": record.kind, "status": str(record.status), "model": record.model}
        except NotFoundError:
            job = {"id": trained.job_id, "status": "deleted"}
    return {"version": chain[0].ref,
            "chain": [{"version": v.ref, "kind": v.kind, "status": str(v.status), "artifact_sha256": v.artifact_sha256,
                       "job_id": v.job_id} for v in chain],
            "job": job, "run_dir": trained.source.get("run_dir"), "checkpoint": trained.source.get("checkpoint"),
            "config": trained.config, "dataset_sha256": trained.dataset_sha256, "base_model": trained.base_model,
            "base_model_name": (job or {}).get("model") or trained.source.get("base_model_name")}


def trained_on(platform: Platform, dataset: str, *, project: str,
               files: bool = True) -> tuple[str, list[ModelVersionRecord]]:
    """The versions trained on a dataset, given as its sha256 or (with ``files``, the CLI) as a file hashed here.

    Raises:
        ConfigError: Neither a file nor a sha256.
    """
    digest = file_sha256(dataset) if files and Path(dataset).is_file() else dataset.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"--dataset {dataset!r} is neither a file nor a sha256 (64 hex digits)", field="dataset",
                          hint="pass the training data file, or the sha256 that 'registry lineage NAME:V' shows")
    return digest, platform.store.list_model_versions(project=project, dataset_sha256=digest)


# --- retention ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PruneResult:
    """What a prune did: the versions marked pruned, the bytes deleted, the versions kept."""

    pruned: list[ModelVersionRecord]
    bytes_freed: int
    kept: list[int]


def prune(platform: Platform, name: str, *, project: str, keep: int) -> PruneResult:
    """Delete the artifacts of the versions of ``name`` beyond the ``keep`` newest that no alias points at.

    The rows stay, marked ``pruned``. Bytes another stored version still uses (the same content registered
    twice, in any project) are kept.
    """
    _require_model(platform, name, project=project)
    versions = platform.store.list_model_versions(project=project, name=name)
    aliased = {v for a in platform.store.list_model_aliases(project=project, name=name)
               for v in (a.split() or {a.version: 1.0})}  # every version of a split is served
    pruned, freed = [], 0
    for candidate in prune_candidates(versions, keep=keep, aliased=aliased):
        try:
            pruned.append(platform.store.update_model_version(project=project, name=name, version=candidate.version,
                                                              pruned_at=now()))
        except ConflictError:  # an alias moved onto it meanwhile
            continue
        users = platform.store.list_model_versions(project=None, artifact_sha256=candidate.artifact_sha256)
        folder = Path(candidate.artifact_path)
        if not any(u.status is VersionStatus.READY for u in users) and folder.is_dir():
            freed += folder_bytes(folder)
            doomed = folder.with_name(f".pruned-{folder.name}")
            folder.rename(doomed)  # gone from its name at once: a registration of the same bytes copies them again
            shutil.rmtree(doomed, ignore_errors=True)
    gone = {p.version for p in pruned}
    kept = [v.version for v in versions if v.status is VersionStatus.READY and v.version not in gone]
    return PruneResult(pruned=pruned, bytes_freed=freed, kept=kept)
