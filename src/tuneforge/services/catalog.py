"""Models a project can use: the base models the server offers and its fine-tuned models."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, ConflictError, NotFoundError, TuneforgeError
from tuneforge.models.resolve import BUILTINS
from tuneforge.services.platform import Platform
from tuneforge.storage.records import ModelRecord


def base_models(platform: Platform) -> dict[str, str]:
    """Names a job may give as ``model`` -> the reference tuneforge resolves (alias or directory)."""
    return {**{alias: alias for alias in BUILTINS}, **platform.settings.base_models}


def resolve_base_model(platform: Platform, name: str) -> str:
    """The model reference behind a base model name.

    Raises:
        NotFoundError: The server offers no such base model (``param: model``).
    """
    offered = base_models(platform)
    if name in offered:
        return offered[name]
    if platform.settings.allow_local_paths and Path(name).is_dir():
        return str(Path(name).resolve())
    error = NotFoundError(
        f"The model '{name}' does not exist or you do not have access to it.",
        hint=f"base models of this server: {', '.join(sorted(offered))}; register more with "
        "'tuneforge server --base-model NAME=DIR'",
    )
    error.param, error.code = "model", "model_not_found"  # type: ignore[attr-defined]
    raise error


# OpenAI's rule for ``suffix``; model ids are made only of these characters (and ':' between the parts).
SUFFIX_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_NAME_PART = re.compile(r"[A-Za-z0-9._-]+")


def check_suffix(suffix: str | None) -> str | None:
    """``suffix`` if it is 1-64 letters, digits, '.', '_' or '-' (OpenAI's rule), else a ConfigError naming it."""
    if suffix is not None and not re.fullmatch(SUFFIX_PATTERN[1:-1], suffix):
        shown = suffix if len(suffix) <= 80 else f"{suffix[:80]}... ({len(suffix)} characters)"
        raise ConfigError(f"invalid suffix {shown!r}", field="suffix",
                          hint="use 1-64 letters, digits, '.', '_' or '-' (e.g. 'support-bot-v2')")
    return suffix


def fine_tuned_model_name(*, base: str, project: str, suffix: str | None, job_id: str) -> str:
    """The name of the model a fine-tuning job makes: ``ft:{base}:{project}:{suffix}:{id}`` (OpenAI's form).

    Every part is made of ``[A-Za-z0-9._-]``, so the id is one path segment that any route can retrieve and
    delete: a base model given as a local path contributes its folder name, other characters become '-'.

    Raises:
        ConfigError: An invalid ``suffix`` (``param: suffix``).
    """
    check_suffix(suffix)
    folder = base.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "model"
    safe_base = "-".join(_NAME_PART.findall(folder)) or "model"
    return f"ft:{safe_base}:{project}:{suffix or ''}:{job_id.split('-', 1)[1][:12]}"


def resolve_model_reference(platform: Platform, name: str, *, project: str) -> str:
    """What an evaluation or compression job loads for ``name``: a base model of the server, one of the
    project's fine-tuned models (its adapter or model folder), a registered version (``name``, ``name:3``,
    ``name@alias``: its stored artifact), or, with ``allow_local_paths``, a local path.

    Raises:
        NotFoundError: None of these (``param: model``).
    """
    try:
        return platform.store.get_model(name, project=project).path
    except NotFoundError:
        pass
    from tuneforge.services.registry import loadable_path, resolve_model_version

    version = resolve_model_version(platform, name, project=project)  # name, name:3, name@alias
    if version is not None:
        return loadable_path(version)
    if platform.settings.allow_local_paths and Path(name).exists():
        return str(Path(name).resolve())
    return resolve_base_model(platform, name)


def list_models(platform: Platform, *, project: str) -> list[dict[str, Any]]:
    """Base models (owned by ``tuneforge``) then the project's fine-tuned models."""
    bases = [{"id": name, "owned_by": "tuneforge", "created": 0, "kind": "base"} for name in base_models(platform)]
    tuned = [{"id": m.id, "owned_by": m.project, "created": int(m.created_at), "kind": "fine-tuned",
              "job_id": m.job_id, "base_model": m.base_model, "path": m.path}
             for m in platform.store.list_models(project=project)]
    return bases + tuned


def get_model(platform: Platform, model_id: str, *, project: str) -> dict[str, Any]:
    """One model of :func:`list_models`; raises NotFoundError."""
    for model in list_models(platform, project=project):
        if model["id"] == model_id:
            return model
    raise NotFoundError(f"The model '{model_id}' does not exist or you do not have access to it.")


def delete_model(platform: Platform, model_id: str, *, project: str) -> ModelRecord:
    """Delete a fine-tuned model and its weights folder.

    Raises:
        ConflictError: ``model_id`` is a base model.
        NotFoundError: No such fine-tuned model in the project.
    """
    if model_id in base_models(platform):
        raise ConflictError(f"'{model_id}' is a base model; only fine-tuned models can be deleted")
    record = platform.store.delete_model(model_id, project=project)
    shutil.rmtree(record.path, ignore_errors=True)
    return record


def check_base_model(platform: Platform, name: str) -> dict[str, Any]:
    """Where a base model name leads: the loadable folder and its source. A check only: a builtin or GGUF
    model is not converted here (that happens once, when a job first uses it); ``converted`` says if it was.

    Raises:
        NotFoundError: No such base model, or its folder is missing.
        TuneforgeError: A builtin whose package is not installed.
    """
    import importlib.util

    from tuneforge.models.resolve import resolve_model

    reference = resolve_base_model(platform, name)
    if reference in BUILTINS:
        builtin = BUILTINS[reference]
        if importlib.util.find_spec(builtin.module) is None:
            raise TuneforgeError(f"builtin model '{name}' needs the package '{builtin.package}', which is not "
                                 "installed on the server", hint=builtin.install)
        cached = platform.settings.model_cache_dir / reference
        return {"path": str(cached), "source": "builtin", "converted": (cached / "config.json").is_file()}
    if reference.endswith(".gguf"):
        if not Path(reference).is_file():
            raise NotFoundError(f"the GGUF file of base model '{name}' is missing", hint="check --base-model")
        return {"path": reference, "source": "gguf", "converted": False}
    resolved = resolve_model(reference, cache_dir=platform.settings.model_cache_dir)
    return {"path": str(resolved.path), "source": resolved.source, "converted": True}
