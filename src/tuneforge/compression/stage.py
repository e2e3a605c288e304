"""A model as it stands between two steps, and the step strategies (registered with their configs in ``recipe``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from tuneforge.compression.recipe import STEPS, StepConfig
from tuneforge.errors import ConfigError
from tuneforge.progress import ProgressCallback, no_progress

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

    from tuneforge.settings import Settings

S = TypeVar("S", bound=StepConfig)
S_contra = TypeVar("S_contra", bound=StepConfig, contravariant=True)


@dataclass
class Stage:
    """The model after a step: something that generates, and the files it was saved as.

    Attributes:
        model: A causal LM with transformers' ``generate`` (a torch module, or an adapter over llama.cpp / ONNX).
        tokenizer: Its tokenizer.
        files: Folder (or file) holding the artifact as written; its size is the size on disk.
        format: What the artifact is, e.g. ``transformers fp32``, ``torch.ao int8 dynamic``, ``gguf q8_0``.
        parameters: Weights in the model, however they are stored.
        nonzero_parameters: Weights that are not zero (equals ``parameters`` unless pruned to zeros).
        runs_on: Devices the artifact runs on (``cpu``, ``cuda``).
        details: Step-specific facts for the report (measured sparsity, removed heads, training loss, ...).
        base: The source's base model folder, while ``model`` is the source with its adapter merged.
        adapter: The source's LoRA adapter folder (unmerged), likewise (``export`` with ``adapter: separate``).
    """

    model: Any  # a torch module, or an adapter over llama.cpp / onnxruntime with the same generate()
    tokenizer: PreTrainedTokenizerBase
    files: Path
    format: str
    parameters: int
    nonzero_parameters: int
    runs_on: list[str] = field(default_factory=lambda: ["cpu", "cuda"])
    details: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None
    adapter: Path | None = None


@dataclass
class StepContext:
    """What a step gets besides the stage it transforms.

    Attributes:
        workdir: Empty folder for this step's artifact (inside the pipeline's staging folder).
        scratch: Empty folder for intermediate files (training runs), removed after the step.
        calibration: ``[1, t]`` token-id tensors of the calibration examples (empty without calibration data).
        settings: The pipeline's settings, handed to training by a recovery fine-tune.
        seed: The recipe's seed.
        progress: Progress callback.
        index: Position of the step in the recipe (for error messages).
        file: The recipe file, if any (for error messages).
    """

    workdir: Path
    scratch: Path
    calibration: list[torch.Tensor]
    settings: Settings
    seed: int = 0
    progress: ProgressCallback = no_progress
    index: int = 0
    file: str | None = None


class StepCheck(Protocol[S_contra]):
    """``check(step, model_config, index=, file=)``: raises :class:`ConfigError` when the step does not fit the
    model (from its config alone, before weights are loaded)."""

    def __call__(self, step: S_contra, config: PretrainedConfig, *, index: int, file: str | None) -> None: ...


@dataclass(frozen=True)
class StepStrategy(Generic[S]):
    """A step kind (``S`` is its config class): a check that runs before any work, and the transformation.

    Attributes:
        check: See :class:`StepCheck`.
        apply: ``apply(stage, step, context) -> Stage``.
    """

    check: StepCheck[S]
    apply: Callable[[Stage, S, StepContext], Stage]


def get_step(name: str) -> StepStrategy[StepConfig]:
    """The strategy of the step kind registered as ``name``.

    Raises:
        ConfigError: No step is registered as ``name``.
    """
    return STEPS.strategy(name)


def step_error(message: str, *, context_index: int, file: str | None, field_name: str, hint: str) -> ConfigError:
    """A :class:`ConfigError` that names the recipe's step and field."""
    return ConfigError(message, file=file, field=f"steps.{context_index}.{field_name}", hint=hint)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all, non-zero) weights of a torch model."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int((p != 0).sum())
    return total, nonzero


def save_transformers(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, folder: Path) -> Path:
    """Save a plain transformers model and its tokenizer (safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
