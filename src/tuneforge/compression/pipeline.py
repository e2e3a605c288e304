"""Run a recipe's steps in order on a model reference or a run directory, measuring before and after each.

Everything that can be checked is checked before any work (recipe, step fit from the model's config, eval and
calibration data, the output folder); the source is only read; the output folder appears whole or not at all.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneforge.compression.measure import StageFigures, measure_stage
from tuneforge.compression.recipe import CompressionRecipe, DistillStep, ExportStep, QuantizeStep
from tuneforge.compression.report import CompressionReport, write_reports
from tuneforge.compression.stage import Stage, StepContext, count_parameters, get_step, save_transformers
from tuneforge.errors import ConfigError, ConflictError
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress

if TYPE_CHECKING:
    from tuneforge.settings import Settings

TERMINAL = (QuantizeStep, ExportStep)


def run_pipeline(
    reference: str, recipe: CompressionRecipe, *, output: str | Path, settings: Settings, overwrite: bool = False,
    file: str | None = None, progress: ProgressCallback = no_progress,
) -> CompressionReport:
    """Compress a model as the recipe says and write ``output`` (model/, report.json, report.md, recipe.yaml).

    Args:
        reference: Builtin alias, model directory, .gguf file, hub id, run directory or adapter directory.
        recipe: The validated recipe (data paths already absolute, see :func:`load_recipe`).
        output: Folder to write; it must not exist (or be empty) unless ``overwrite``.
        settings: Where models are cached (the source, and the recovery fine-tunes' base).
        overwrite: Replace an existing output folder.
        file: The recipe file, named in errors.
        progress: Receives a stage per step and measurement, and steps of long loops.

    Raises:
        ConfigError: A step that does not fit the model or the recipe's order (before any work).
        ConflictError: ``output`` holds files and ``overwrite`` is not set.
        DataError / NotFoundError: Bad eval or calibration data, or a missing model (before any work).
    """
    from tuneforge.compression.calibration import calibration_examples
    from tuneforge.models.inference import locate
    from tuneforge.evaluation.suites import load_tasks
    from tuneforge.storage.files import atomic_directory

    output = Path(output)
    _check_output(output, overwrite=overwrite)
    _check_order(recipe, file=file)
    source = locate(reference, cache_dir=settings.model_cache_dir)
    _check_steps(recipe, source.base, file=file)
    _check_separate_adapter(recipe, source.adapter, file=file)
    suite, tasks = load_tasks(recipe.eval) if recipe.eval is not None else (None, [])
    calibration = calibration_examples(recipe.calibration, seed=recipe.seed) if recipe.calibration else []
    started = time.perf_counter()
    with atomic_directory(output) as staging:
        work = staging / ".work"
        stage = _load_source(reference, work / "0-source", cache_dir=settings.model_cache_dir, progress=progress)
        token_ids = _tokenize(calibration, stage.tokenizer, recipe)

        def measure(stage: Stage, label: str, seconds: float = 0.0) -> StageFigures:
            return measure_stage(stage, label=label, tasks=tasks, suite=suite, latency_samples=recipe.latency_samples,
                                 latency_tokens=recipe.latency_tokens, seconds=seconds, progress=progress)

        figures = [measure(stage, "source")]
        for index, step in enumerate(recipe.steps, start=1):
            label = f"{step.name} {getattr(step, 'method', None) or getattr(step, 'format', '')}".strip()
            progress(ProgressEvent(ProgressKind.STAGE, f"step {index}/{len(recipe.steps)}: {label}"))
            context = StepContext(workdir=_fresh(work / f"{index}-{step.name}"),
                                  scratch=_fresh(work / f"{index}-scratch"), calibration=token_ids,
                                  seed=recipe.seed, progress=progress, index=index - 1, file=file,
                                  settings=settings)
            step_started = time.perf_counter()
            previous = stage.files
            stage = get_step(step.name).apply(stage, step, context)
            shutil.rmtree(context.scratch, ignore_errors=True)
            if previous != stage.files and previous.is_dir():
                shutil.rmtree(previous, ignore_errors=True)
            figures.append(measure(stage, label, time.perf_counter() - step_started))
        if callable(getattr(stage.model, "close", None)):
            stage.model.close()  # a runtime outside torch (llama.cpp) frees its memory now
        shutil.move(str(stage.files), staging / "model")
        shutil.rmtree(work, ignore_errors=True)
        report = CompressionReport.build(reference=reference, output=output, recipe=recipe, stages=figures,
                                         seconds=time.perf_counter() - started)
        (staging / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
        write_reports(report, staging)
    return report


def _check_output(output: Path, *, overwrite: bool) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConflictError(f"output {output} already holds files", hint="choose another --output, or pass "
                            "--overwrite to replace it")


def _check_order(recipe: CompressionRecipe, *, file: str | None) -> None:
    """Quantize and export produce artifacts that no other step reads: they must come last."""
    for index, step in enumerate(recipe.steps[:-1]):
        if isinstance(step, TERMINAL):
            raise ConfigError(f"a {step.name} step must be the last step (step {index + 1} of {len(recipe.steps)})",
                              file=file, field=f"steps.{index}.name",
                              hint="put prune and distill steps first, then one quantize or export step")


def _check_steps(recipe: CompressionRecipe, base: Path, *, file: str | None) -> None:
    """Each step's own check against the model's config; a distill step's student depth carries to later checks."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base)
    if getattr(config, "is_encoder_decoder", False) or not getattr(config, "num_hidden_layers", None):
        raise ConfigError(f"compression works on decoder-only causal LMs; {base} is a '{config.model_type}' model",
                          file=file, field="steps", hint="pass a causal language model (llama, qwen2, ...)")
    for index, step in enumerate(recipe.steps):
        get_step(step.name).check(step, config, index=index, file=file)
        if isinstance(step, DistillStep):
            config.num_hidden_layers = step.layers or max(config.num_hidden_layers // 2, 1)


def _check_separate_adapter(recipe: CompressionRecipe, adapter: Path | None, *, file: str | None) -> None:
    """``adapter: separate`` needs a LoRA adapter to keep apart, and a base that no earlier step changed."""
    from tuneforge.compression.export.gguf_lora import check_lora_adapter

    for index, step in enumerate(recipe.steps):
        if not isinstance(step, ExportStep) or step.adapter != "separate":
            continue
        where = f"steps.{index}.adapter"
        if adapter is None:
            raise ConfigError("adapter: separate exports a LoRA adapter beside its base, and this model has none",
                              file=file, field=where, hint="compress a run or adapter folder that trained LoRA, "
                              "or drop 'adapter: separate'")
        if len(recipe.steps) > 1:
            raise ConfigError("adapter: separate must be the only step: the adapter was trained on the original "
                              "base weights, which prune and distill steps change", file=file, field=where,
                              hint="remove the other steps, or use adapter: merged")
        check_lora_adapter(adapter, field=where, file=file)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _load_source(reference: str, folder: Path, *, cache_dir: Path, progress: ProgressCallback) -> Stage:
    """Load the model (adapter merged) and save it as a plain fp32 transformers folder: the baseline."""
    from tuneforge.models.inference import load_for_inference

    progress(ProgressEvent(ProgressKind.STAGE, f"loading {reference} (adapter merged)"))
    model, tokenizer, source = load_for_inference(reference, cache_dir=cache_dir, merge=True)
    if hasattr(model, "peft_config"):
        raise ConfigError(f"{reference} has a prompt-learning adapter, which cannot be folded into the weights",
                          field="model", hint="compress the base model, or a LoRA-family run")
    save_transformers(model, tokenizer, folder)
    total, nonzero = count_parameters(model)
    return Stage(model, tokenizer, folder, "transformers fp32", total, nonzero, base=source.base,
                 adapter=source.adapter)


def _tokenize(examples: list[Any], tokenizer: Any, recipe: CompressionRecipe) -> list[Any]:
    """``[1, t]`` token ids of each calibration example (the whole conversation or text)."""
    import torch

    from tuneforge.data import tokenize_examples

    if not examples:
        return []
    rows, _ = tokenize_examples(examples, tokenizer, max_seq_length=recipe.calibration.max_seq_length,
                                train_on_prompt=True)
    return [torch.tensor([row["input_ids"]]) for row in rows]

