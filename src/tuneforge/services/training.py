"""Training use cases: train, merge, validate configs, print templates."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tuneforge.config import TrainConfig, load_config, method_template, validate_config
from tuneforge.config.overrides import apply_overrides
from tuneforge.errors import ConfigError, ConflictError, NotFoundError
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.settings import Settings
from tuneforge.storage.rundir import RunDir
from tuneforge.training.methods import get_method
from tuneforge.training.run import TrainResult, run_training

if TYPE_CHECKING:
    import threading


class DatasetResolver(Protocol):
    """Turns a platform dataset reference into a data file: ``resolve_dataset(ref, since=, replay=, seed=)``.

    ``ref`` is ``name:version``; ``since`` (a version) asks for the records added after it, ``replay`` for that
    fraction of the older ones mixed back in (seeded by ``seed``). The dataset registry provides one; the default
    (:func:`no_dataset_registry`) refuses.
    """

    def __call__(self, ref: str, *, since: int | None, replay: float | None, seed: int) -> Path: ...


def no_dataset_registry(ref: str, *, since: int | None, replay: float | None, seed: int) -> Path:
    """The resolver where no dataset registry is wired in: a clear :class:`ConfigError`."""
    raise ConfigError(
        f"data entry {{dataset: {ref}}}: dataset references need the platform's dataset registry, which this "
        "command does not reach",
        field="data.train",
        hint="run the config as a platform job, or point the entry at a file: {path: FILE}",
    )


def as_train_config(
    config: TrainConfig | dict[str, Any] | str | Path, *, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Accept a config model, a mapping (API body) or a YAML path; apply ``--set KEY=VALUE`` overrides.

    Raises:
        ConfigError: The config does not validate; an error about an overridden field names the ``--set`` argument.
    """
    if isinstance(config, TrainConfig):
        if not overrides:
            return config
        config = config.model_dump(mode="json", exclude_unset=True)
    if isinstance(config, dict):
        return validate_config(apply_overrides(config, overrides), TrainConfig, overrides=overrides)
    return load_config(config, TrainConfig, overrides=overrides)


def resolve_datasets(config: TrainConfig, *, resolve_dataset: DatasetResolver = no_dataset_registry) -> TrainConfig:
    """``config`` with each ``{dataset: ...}`` data entry given the file ``resolve_dataset`` makes of it.

    The entry keeps its reference next to the ``path`` (the run folder's config.yaml records both, and re-runs
    without the platform). Entries that already have a path are left alone.
    """
    def resolved(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [source if source.path is not None or source.dataset is None else source.model_copy(update={
            "path": str(resolve_dataset(source.dataset, since=source.since, replay=source.replay, seed=config.seed))
        }) for source in value]

    data = config.data.model_copy(update={"train": resolved(config.data.train), "eval": resolved(config.data.eval)})
    return config.model_copy(update={"data": data})


def train(
    config: TrainConfig | dict[str, Any] | str | Path,
    *,
    settings: Settings,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    stop: threading.Event | None = None,
    overrides: Sequence[str] = (),
    resolve_dataset: DatasetResolver = no_dataset_registry,
) -> TrainResult:
    """Fine-tune as the config says (a :class:`TrainConfig`, a mapping, or a YAML path).

    See :func:`tuneforge.training.run_training` for the arguments and errors; ``stop`` is the shell's
    stop request (set on Ctrl-C / SIGTERM): training ends after the current step with a checkpoint and
    :class:`tuneforge.errors.Interrupted` is raised. ``overrides`` are ``--set KEY=VALUE`` arguments;
    ``resolve_dataset`` turns ``{dataset: name:version}`` data entries into files (:func:`resolve_datasets`).
    """
    resolved = resolve_datasets(as_train_config(config, overrides=overrides), resolve_dataset=resolve_dataset)
    return run_training(resolved, settings=settings, resume=resume, overwrite=overwrite, progress=progress, stop=stop)


def template(name: str) -> str:
    """The commented example config of a method."""
    return method_template(name)


def merge_run(
    run_dir: str | Path, *, output: str | Path, settings: Settings, progress: ProgressCallback = no_progress
) -> Path:
    """Fold a run's adapter into its base model and save a plain transformers model at ``output``."""
    from tuneforge.models.inference import load_for_inference
    from tuneforge.storage.files import atomic_directory

    run, output = RunDir(Path(run_dir)), Path(output)
    marker = run.read_marker()
    if marker is None:
        raise NotFoundError(f"{run.root} is not a tuneforge run directory", hint="pass the output_dir of a run")
    if not run.has_adapter() and run.model.is_dir():
        raise ConfigError(
            f"run {run.root} trained the whole model: there is no adapter to merge",
            hint=f"load {run.model} directly",
        )
    method = marker.get("method", "")
    if not get_method(method).mergeable:
        raise ConfigError(
            f"run {run.root} trained {method}: its virtual tokens are not weights and cannot be merged into the base",
            field="method.name",
            hint=f"serve the adapter as it is ('tuneforge generate {run.root}'), or train with lora to merge",
        )
    if output.exists() and any(output.iterdir()):
        raise ConflictError(f"output folder {output} is not empty", hint="choose a new folder for the merged model")
    progress(ProgressEvent(ProgressKind.STAGE, f"merging the adapter of {run.root}"))
    model, tokenizer, _ = load_for_inference(str(run.root), cache_dir=settings.model_cache_dir, merge=True)
    with atomic_directory(output) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return output
