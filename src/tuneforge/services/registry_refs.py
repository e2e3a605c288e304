"""Resolving model references against the registry: ``name`` / ``name:3`` / ``name@alias`` to a stored version,
a registered ``ft:`` id to its version, and the checks the other registry use cases share (an unknown name with
close names in the hint, a version that failed its update's gate). ``services.registry`` re-exports these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.errors import NotFoundError, suggest
from tuneforge.registry.models import LATEST, parse_ref
from tuneforge.services.platform import Platform
from tuneforge.storage.base import Store
from tuneforge.storage.records import ModelVersionRecord, VersionStatus


def _store(platform_or_store: Platform | Store) -> Store:
    return platform_or_store.store if isinstance(platform_or_store, Platform) else platform_or_store


def resolve_model_version(platform_or_store: Platform | Store, ref: str, *, project: str) -> ModelVersionRecord | None:
    """The stored version that ``ref`` names: ``name@alias``, ``name:3``, ``name`` (the newest version still
    stored; also ``name@latest``). ``None`` when ``ref`` is no registry reference (a path, an ``ft:`` id, a
    hub id) or is a bare name that is not registered, so the caller falls back to base models and paths.

    Raises:
        NotFoundError: ``name:V`` or ``name@alias`` of an unknown model, version or alias (close names in
            the hint), or a version whose artifact was pruned.
    """
    parsed = parse_ref(ref)
    if parsed is None:
        return None
    store = _store(platform_or_store)
    names = [m.name for m in store.list_registered_models(project=project)]
    if parsed.name not in names:
        if not parsed.explicit:
            return None
        raise _unknown(f"no registered model '{parsed.name}'", parsed.name, names,
                       hint="list them with 'tuneforge registry list'")
    versions = store.list_model_versions(project=project, name=parsed.name)
    if parsed.alias is not None and parsed.alias != LATEST:
        aliases = {a.alias: a.version for a in store.list_model_aliases(project=project, name=parsed.name)}
        if parsed.alias not in aliases:
            raise _unknown(f"model '{parsed.name}' has no alias '{parsed.alias}'", parsed.alias, aliases,
                           hint=f"set one with 'tuneforge registry alias {parsed.name} VERSION {parsed.alias}'")
        number = aliases[parsed.alias]
    elif parsed.version is not None:
        number = parsed.version
    else:
        stored = [v for v in versions if v.status is VersionStatus.READY and not gate_failed(v)]
        if not stored:
            raise NotFoundError(f"every version of model '{parsed.name}' was pruned", hint="register a new one")
        return stored[-1]
    found = next((v for v in versions if v.version == number), None)
    if found is None:
        raise _unknown(f"model '{parsed.name}' has no version {number}", number, [v.version for v in versions],
                       hint=f"versions: {', '.join(str(v.version) for v in versions)}")
    if found.status is VersionStatus.PRUNED:
        raise NotFoundError(f"version {found.ref} was pruned: its artifact is deleted",
                            hint="use a version that is still stored ('tuneforge registry show NAME')")
    return found


def _unknown(message: str, value: object, known: Any, *, hint: str) -> NotFoundError:
    guess = suggest(value, list(known))
    error = NotFoundError(message, hint=f"{guess} {hint}".strip())
    error.param, error.code = "model", "model_not_found"  # type: ignore[attr-defined]
    return error


def loadable_path(version: ModelVersionRecord) -> str:
    """What a loader is given for a version: its folder, or the single ``.gguf`` file in a GGUF version."""
    folder = Path(version.artifact_path)
    gguf = sorted(folder.glob("*.gguf")) if version.kind == "gguf" else []
    return str(gguf[0] if len(gguf) == 1 else folder)


def version_of(platform_or_store: Platform | Store, reference: str, *, project: str) -> ModelVersionRecord | None:
    """The version behind a model reference: a registry reference, or the ``ft:`` id of a registered fine-tune."""
    version = resolve_model_version(platform_or_store, reference, project=project)
    if version is None and reference.startswith("ft:"):
        found = _store(platform_or_store).list_model_versions(project=project, fine_tuned_model=reference)
        version = found[-1] if found else None
    return version


def get_version(platform: Platform, ref: str, *, project: str) -> ModelVersionRecord:
    """A version by ``name:V`` / ``name@alias`` / ``name``, pruned ones included (for show and lineage)."""
    parsed = parse_ref(ref)
    if parsed is not None and parsed.version is not None:
        _require_model(platform, parsed.name, project=project)
        return platform.store.get_model_version(project=project, name=parsed.name, version=parsed.version)
    version = resolve_model_version(platform, ref, project=project)
    if version is None:
        names = [m.name for m in platform.store.list_registered_models(project=project)]
        raise _unknown(f"no registered model '{ref}'", ref, names, hint="list them with 'tuneforge registry list'")
    return version


def _require_model(platform: Platform | Store, name: str, *, project: str) -> None:
    names = [m.name for m in _store(platform).list_registered_models(project=project)]
    if name not in names:
        raise _unknown(f"no registered model '{name}'", name, names, hint="list them with 'tuneforge registry list'")


def gate_failed(version: ModelVersionRecord) -> bool:
    """Whether the version failed the regression gate of an update (it is registered but never served)."""
    gate = version.scores.get("gate")
    return isinstance(gate, dict) and gate.get("status") == "failed"
