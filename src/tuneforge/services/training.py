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
    command: list[str] | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    resolve_dataset: DatasetResolver = no_dataset_registry,
) -> TrainResult:
    """Fine-tune as the config says (a :class:`TrainConfig`, a mapping, or a YAML path).

    See :func:`tuneforge.training.run_training` for the arguments and errors; ``stop`` is the shell's
    stop request (set on Ctrl-C / SIGTERM): training ends after the current step with a checkpoint and
    :class:`tuneforge.errors.Interrupted` is raised. The run folder gets a ``provenance.json``
    (:func:`tuneforge.services.runs.collect_provenance`) with ``command``, the shell's command line, and the git
    commit of ``config_file``'s folder (default: ``config`` when it is a path). ``overrides`` are ``--set
    KEY=VALUE`` arguments; ``resolve_dataset`` turns ``{dataset: name:version}`` data entries into files
    (:func:`resolve_datasets`).
    """
    from tuneforge.services.alerts import cli_monitor
    from tuneforge.services.runs import collect_provenance

    validated = resolve_datasets(as_train_config(config, overrides=overrides), resolve_dataset=resolve_dataset)
    if config_file is None and isinstance(config, (str, Path)):
        config_file = config
    provenance = collect_provenance(validated, config_file=config_file, command=command)
    monitor = cli_monitor(validated, settings=settings, progress=progress, stop=stop)
    return run_training(validated, settings=settings, resume=resume, overwrite=overwrite, progress=progress,
                        stop=stop, provenance=provenance, extra_callbacks=[monitor])


def check_config(
    config: TrainConfig | dict[str, Any] | str | Path, *, settings: Settings, check_data: bool = True,
    overrides: Sequence[str] = (),
) -> tuple[TrainConfig, list[str]]:
    """Validate a config, then check its model and data as training would, without loading the weights.

    The model must resolve (a builtin's package, a directory's ``config.json``, a GGUF header, the local
    hub cache) and its config and tokenizer must load; the data is read, validated and tokenized by the
    task, so a missing, empty or broken file fails here with its file and line.

    Args:
        config: A :class:`TrainConfig`, a mapping, or a YAML path.
        settings: Where models are cached.
        check_data: Also read and tokenize the data files.
        overrides: ``--set KEY=VALUE`` arguments.

    Returns:
        The config, and one line per check that passed.

    Raises:
        ConfigError, NotFoundError, DataError: The first check that fails.
    """
    from tuneforge.data import load_examples
    from tuneforge.models.loading import load_tokenizer, model_type_of
    from tuneforge.models.resolve import resolve_model
    from tuneforge.training.tasks import get_task

    config = as_train_config(config, overrides=overrides)
    resolved = resolve_model(config.model, cache_dir=settings.model_cache_dir, convert=False)
    if not resolved.path.is_dir():  # a GGUF file converted at the first training run: its header was checked
        checks = [f"model {config.model}: GGUF file {resolved.path} (converted on first use)"]
        tokenizer = None
    else:
        checks = [f"model {config.model}: {model_type_of(resolved.path)} at {resolved.path}, tokenizer loads"]
        tokenizer = load_tokenizer(resolved.path)
    if not check_data:
        return config, checks
    if tokenizer is None:
        for source in (*config.data.train_sources(), *config.data.eval_sources()):
            if source.path is not None:
                examples, fmt = load_examples(source.path, fmt=config.data.format,
                                              system_prompt=config.data.system_prompt)
                checks.append(f"data {source.path}: {len(examples)} examples ({fmt})")
        return config, checks
    data = get_task(config.task.name).build_data(config, tokenizer)
    stats = data.stats
    evaluation = f", {len(data.eval)} eval examples" if data.eval is not None else ""
    checks.append(f"data: {stats['examples']} training examples ({data.data_format}){evaluation}, "
                  f"{stats['tokens']} tokens, {stats['truncated']} truncated, {stats['dropped']} dropped")
    return config, checks


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
