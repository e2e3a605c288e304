"""Compression use cases: run a recipe on a model, validate a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.compression.recipe import CompressionRecipe, load_recipe, resolve_paths
from tuneforge.compression.report import CompressionReport
from tuneforge.config import validate_config
from tuneforge.progress import ProgressCallback, no_progress
from tuneforge.settings import Settings

RecipeLike = CompressionRecipe | dict[str, Any] | str | Path


def as_recipe(recipe: RecipeLike) -> tuple[CompressionRecipe, str | None]:
    """Accept a recipe model, a mapping (API body; paths relative to the working folder) or a YAML path.

    Returns:
        The validated recipe (data paths made absolute) and the file it came from, if any.
    """
    if isinstance(recipe, CompressionRecipe):
        return recipe, None
    if isinstance(recipe, dict):
        return resolve_paths(validate_config(recipe, CompressionRecipe), Path.cwd()), None
    return load_recipe(recipe), str(recipe)


def compress_model(
    model: str, recipe: RecipeLike, *, output: str | Path, settings: Settings, overwrite: bool = False,
    progress: ProgressCallback = no_progress,
) -> CompressionReport:
    """Compress a model (a reference or a run directory; an adapter is merged first) as the recipe says.

    Writes ``output/model/`` (the compressed model), ``report.json``, ``report.md`` and ``recipe.yaml``;
    the source is never modified, and ``output`` appears whole or not at all.

    Args:
        model: Builtin alias, model directory, .gguf file, hub id, run directory or adapter directory.
        recipe: A :class:`CompressionRecipe`, a mapping, or a recipe YAML path.
        output: Folder to write.
        settings: Where models are cached.
        overwrite: Replace an existing output folder.
        progress: Receives stages and steps.

    Raises:
        ConfigError: A recipe that does not validate or a step that does not fit the model (before any work).
        DataError: Missing or malformed eval, calibration or training data (before any work).
        ConflictError: ``output`` holds files and ``overwrite`` is not set.
        NotFoundError: The model cannot be found.
        MissingDependencyError: A step needs an optional package that is not installed.
    """
    from tuneforge.compression.pipeline import run_pipeline

    validated, file = as_recipe(recipe)
    return run_pipeline(model, validated, output=output, settings=settings, overwrite=overwrite, file=file,
                        progress=progress)
