"""The compression recipe: steps in order (each kind with its typed options), calibration data, evaluation.

.. code-block:: yaml

    eval:                                # measured before the first step and after each one
      tasks:
        - data: quickstart/data/test.jsonl
          metrics: [exact_match]
          max_new_tokens: 48
    calibration:                         # for wanda, structured pruning, static int8
      data: quickstart/data/train.jsonl
      samples: 64
    steps:
      - name: prune
        method: wanda
        sparsity: 0.5
      - name: quantize
        method: int8_dynamic

Each step kind is a config class here registered with its strategy (``@STEPS.register(strategy=...)``, see
:mod:`tuneforge.config.registry`); the ``steps`` union, the step names in help and errors follow from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tuneforge.config.base import DataFormat, NamedConfig, StrictModel
from tuneforge.config.loader import load_config
from tuneforge.config.registry import Registry
from tuneforge.evaluation.suites import SuiteConfig

QuantizeMethod = Literal["int8_dynamic", "int8_weight_only", "int4_weight_only", "nf4", "fp4", "bnb_int8"]
ExportQuantization = Literal["f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "int8_dynamic", "int8_static"]
PruneMethod = Literal["magnitude", "wanda", "semi_structured", "heads", "mlp_channels", "layers"]


class StepConfig(NamedConfig):
    """Base of every compression step's config class."""

    def needs_calibration(self) -> bool:
        """Whether the step reads calibration activations."""
        return False


STEPS: Registry[StepConfig] = Registry("step", field="steps")


def step_names() -> tuple[str, ...]:
    """The registered step kinds, in registration order."""
    return STEPS.names()


@STEPS.register(strategy="tuneforge.compression.steps.quantize:QUANTIZE")
class QuantizeStep(StepConfig):
    """Quantize the weights of the linear layers (the model stays a PyTorch model)."""

    name: Literal["quantize"] = Field("quantize", description="Step kind.")
    method: QuantizeMethod = Field(
        "int8_dynamic",
        description="int8_dynamic (torch.ao: int8 weights, activations quantized at run time; CPU), "
        "int8_weight_only (torchao; CPU and GPU), int4_weight_only (torchao; CUDA only), "
        "nf4 / fp4 / bnb_int8 (bitsandbytes, for GPU serving; also runs on CPU with bitsandbytes >= 0.45).",
    )
    skip_modules: list[str] | None = Field(
        None,
        description="Modules left in full precision (name suffixes, e.g. lm_head). Default: down_proj for "
        "int8_dynamic (the MLP output's inputs carry activation outliers, |x| in the thousands on a few tokens, "
        "that per-tensor int8 activations cannot hold), none for the weight-only methods.",
    )
    group_size: int = Field(128, ge=16, description="Weights per scale for int4_weight_only.")

    @model_validator(mode="after")
    def _default_skips(self) -> QuantizeStep:
        if self.skip_modules is None:
            self.skip_modules = ["down_proj"] if self.method == "int8_dynamic" else []
        return self


class RecoverySettings(StrictModel):
    """A short fine-tune after pruning that wins back quality; pruned weights stay zero (or gone)."""

    data: str = Field(description="Training data file (any training format); relative to the recipe file.")
    method: Literal["lora", "full"] = Field("lora", description="lora (merged afterwards) or full.")
    epochs: float = Field(1.0, gt=0, description="Passes over the data.")
    learning_rate: float = Field(2.0e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per step.")
    max_seq_length: int = Field(256, ge=16, description="Longest training sequence in tokens.")


@STEPS.register(strategy="tuneforge.compression.steps.prune:PRUNE")
class PruneStep(StepConfig):
    """Remove weights: zero them (magnitude, wanda, 2:4) or cut whole heads, MLP channels or layers."""

    name: Literal["prune"] = Field("prune", description="Step kind.")
    method: PruneMethod = Field(
        "magnitude",
        description="magnitude (smallest |w| per layer), wanda (|w| x input activation norm; needs calibration), "
        "semi_structured (2 of every 4 input weights, the 2:4 pattern sparse tensor cores run), "
        "heads (key/value head groups), mlp_channels (MLP intermediate channels), layers (whole decoder blocks); "
        "heads, mlp_channels and layers make the saved model smaller and need calibration data.",
    )
    sparsity: float = Field(0.5, gt=0, lt=1, description="Fraction of weights (magnitude, wanda), or of heads, "
                            "channels or layers, to remove. semi_structured is always 0.5.")
    score: Literal["magnitude", "wanda"] = Field("magnitude", description="How semi_structured ranks weights.")
    skip_modules: list[str] = Field(default_factory=lambda: ["lm_head"],
                                    description="Linear modules never pruned (name suffixes).")
    recover: RecoverySettings | None = Field(None, description="Optional recovery fine-tune after pruning.")

    def needs_calibration(self) -> bool:
        """wanda scores, structured pruning and 2:4 by wanda score read activations."""
        return self.method in {"wanda", "heads", "mlp_channels", "layers"} or (
            self.method == "semi_structured" and self.score == "wanda")


@STEPS.register(strategy="tuneforge.compression.steps.distill:DISTILL")
class DistillStep(StepConfig):
    """Train a student with fewer layers (initialized from the teacher's) on KL to the teacher plus the task loss."""

    name: Literal["distill"] = Field("distill", description="Step kind.")
    data: str = Field(description="Training data file (any chat / instruction format); relative to the recipe file.")
    layers: int | None = Field(None, ge=1, description="Student decoder layers (default: half the teacher's).")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of the KL term.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KL term; 1 - alpha weighs the task loss.")
    epochs: float = Field(2.0, gt=0, description="Passes over the data.")
    learning_rate: float = Field(1.0e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per step.")
    max_seq_length: int = Field(256, ge=16, description="Longest training sequence in tokens.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps (overrides epochs).")


@STEPS.register(strategy="tuneforge.compression.steps.export:EXPORT")
class ExportStep(StepConfig):
    """Write the model in a serving format: GGUF for llama.cpp, ONNX for onnxruntime."""

    name: Literal["export"] = Field("export", description="Step kind.")
    format: Literal["gguf", "onnx"] = Field("gguf", description="gguf (llama.cpp) or onnx (onnxruntime).")
    quantization: ExportQuantization | None = Field(
        None,
        description="gguf: f32, f16, q8_0 (default), q5_1, q5_0, q4_1 or q4_0; onnx: none (default), int8_dynamic or int8_static "
        "(onnxruntime; int8_static needs calibration data).",
    )
    adapter: Literal["merged", "separate"] = Field(
        "merged",
        description="For a LoRA adapter (or a run that trained one): merged folds it into the base weights before "
        "quantizing; separate (gguf only) quantizes the base alone and writes the adapter as a full-precision GGUF "
        "LoRA adapter (adapter.gguf) that llama.cpp applies at run time, so 4-bit rounding does not erase it.",
    )

    @model_validator(mode="after")
    def _fits_format(self) -> ExportStep:
        allowed = {"gguf": {"f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"}, "onnx": {"int8_dynamic", "int8_static"}}[self.format]
        if self.quantization is not None and self.quantization not in allowed:
            raise ValueError(f"quantization '{self.quantization}' does not apply to {self.format} "
                             f"(choose from {', '.join(sorted(allowed))})")
        if self.adapter == "separate" and self.format != "gguf":
            raise ValueError("adapter: separate applies to format: gguf (llama.cpp's runtime LoRA adapters)")
        if self.format == "gguf" and self.quantization is None:
            self.quantization = "q8_0"
        return self

    def needs_calibration(self) -> bool:
        """Static int8 ONNX calibrates its activation scales."""
        return self.quantization == "int8_static"


class CalibrationSettings(StrictModel):
    """Examples whose activations guide wanda, structured pruning and static int8."""

    data: str = Field(description="Data file (any training format); relative to the recipe file.")
    format: DataFormat = Field("auto", description="Data format; 'auto' detects it from the keys.")
    samples: int = Field(64, ge=1, description="Examples to use.")
    max_seq_length: int = Field(256, ge=16, description="Longest calibration sequence in tokens.")


class CompressionRecipe(StrictModel):
    """A compression pipeline: steps run in order, quality and cost measured before and after each."""

    examples_hint: ClassVar[str] = (
        "the recipes in configs/compress/ and the README's Compressing table show every step and its options"
    )

    steps: list[StepConfig] = Field(min_length=1)  # the union of registered steps: bound below the class
    eval: SuiteConfig | None = Field(None, description="Evaluation suite run before the first and after each step "
                                     "(the evaluation module's suite: tasks, metrics, batch size).")
    calibration: CalibrationSettings | None = Field(None, description="Calibration data (wanda, structured "
                                                    "pruning, static int8).")
    latency_samples: int = Field(4, ge=0, description="Requests timed one at a time for TTFT and per-token "
                                 "latency (0: skip).")
    latency_tokens: int = Field(32, ge=2, description="Tokens generated per timed request (EOS ignored, so that "
                                "every step is timed on the same work).")
    seed: int = Field(0, description="Seed of calibration sampling and of training steps.")

    @model_validator(mode="after")
    def _calibration_when_needed(self) -> CompressionRecipe:
        for i, step in enumerate(self.steps):
            if self.calibration is None and step.needs_calibration():
                what = f"{step.name} {getattr(step, 'method', '')} {getattr(step, 'quantization', '') or ''}".split()
                raise ValueError(f"steps.{i} ({' '.join(what)}) needs calibration data, and the recipe has "
                                 "no 'calibration' (add calibration: {data: FILE})")
        return self


STEPS.bind(CompressionRecipe, "steps", wrap=lambda union: list[union],
           description="Steps, run in this order; each a mapping with 'name' ({names}) and its options.")


def load_recipe(path: str | Path) -> CompressionRecipe:
    """Read a recipe YAML file; relative data paths become relative to the file.

    Raises:
        ConfigError: Missing file, bad YAML, or a field that does not validate (names the file, line, field).
    """
    path = Path(path)
    recipe = load_config(path, CompressionRecipe)
    return resolve_paths(recipe, path.parent)


def resolve_paths(recipe: CompressionRecipe, base: Path) -> CompressionRecipe:
    """Make the recipe's data paths absolute against ``base`` (the recipe file's folder)."""

    def fix(value: str) -> str:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (base / p).resolve())

    if recipe.calibration is not None:
        recipe.calibration.data = fix(recipe.calibration.data)
    for step in recipe.steps:
        if isinstance(step, DistillStep):
            step.data = fix(step.data)
        if isinstance(step, PruneStep) and step.recover is not None:
            step.recover.data = fix(step.recover.data)
    if recipe.eval is not None:
        for task in recipe.eval.tasks:
            if task.data is not None:
                task.data = fix(task.data)
    return recipe
