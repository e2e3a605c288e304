"""The training config: one validated pydantic model, the same shape as the YAML file and the API body."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TargetModules = Union[Literal["auto", "all-linear"], list[str]]
DataFormat = Literal["auto", "messages", "alpaca", "prompt_completion", "qa", "text", "classification"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraMethod(StrictModel):
    """Low-rank adapters (LoRA) on a frozen base model."""

    name: Literal["lora"] = Field("lora", description="Method name.")
    r: int = Field(16, ge=1, le=1024, description="Rank of the low-rank update matrices.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator: the update is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: TargetModules = Field(
        "auto",
        description="Modules that get adapters: 'auto' (the architecture table), 'all-linear', or a list of "
        "module names or suffixes.",
    )
    rslora: bool = Field(False, description="Rank-stabilized LoRA: scale by alpha / sqrt(r).")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved with the adapter (e.g. a new head)."
    )
    init: Literal["default", "gaussian", "pissa", "olora"] = Field(
        "default",
        description="Adapter initialization: default (B = 0), gaussian, pissa (principal singular vectors of the "
        "weight) or olora (QR of the weight).",
    )
    loraplus_lr_ratio: float | None = Field(
        None, gt=0, description="LoRA+: train B with this many times the learning rate of A (e.g. 16)."
    )
    target_parameters: list[str] | None = Field(
        None,
        description="Parameters adapted directly, not through a Linear module: the fused experts of MoE models in "
        "transformers 5, e.g. [experts.gate_up_proj, experts.down_proj] (PEFT's target_parameters; dropout must be 0).",
    )

    @field_validator("target_parameters")
    @classmethod
    def _parameters_without_dropout(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value and info.data.get("dropout", 0) != 0:
            raise ValueError("PEFT adapts parameters (fused experts) without dropout: set method.dropout: 0")
        return value


class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (DoRA): LoRA on the direction, a trained magnitude vector."""

    name: Literal["dora"] = Field("dora", description="Method name.")


class QloraMethod(LoraMethod):
    """LoRA on a base model quantized to 4 or 8 bits with bitsandbytes."""

    name: Literal["qlora"] = Field("qlora", description="Method name.")
    bits: Literal[4, 8] = Field(4, description="Bits per base weight.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type (4-bit only).")
    double_quant: bool = Field(True, description="Quantize the quantization constants too (4-bit only).")

    @model_validator(mode="after")
    def _four_bit_options(self) -> QloraMethod:
        if self.bits == 8 and {"quant_type", "double_quant"} & self.model_fields_set:
            raise ValueError("quant_type and double_quant apply to bits: 4 only; remove them or set bits: 4")
        return self


class FullMethod(StrictModel):
    """Full fine-tuning: every weight is trained."""

    name: Literal["full"] = Field("full", description="Method name.")


class FreezeMethod(StrictModel):
    """Train only the last N transformer layers or the named modules; freeze the rest."""

    name: Literal["freeze"] = Field("freeze", description="Method name.")
    trainable_layers: int | None = Field(
        2, ge=1, description="Train the last N transformer layers (and the final norm)."
    )
    trainable_modules: list[str] | None = Field(
        None, description="Also train parameters whose name contains one of these strings."
    )

    @model_validator(mode="after")
    def _something_trains(self) -> FreezeMethod:
        if self.trainable_layers is None and not self.trainable_modules:
            raise ValueError("set trainable_layers or trainable_modules: otherwise nothing would train")
        return self


class _PromptLearning(StrictModel):
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Trained virtual tokens put before the input.")


class PrefixTuningMethod(_PromptLearning):
    """Prefix tuning: trained key/value prefixes in every attention layer."""

    name: Literal["prefix_tuning"] = Field("prefix_tuning", description="Method name.")
    prefix_projection: bool = Field(False, description="Reparameterize the prefix through an MLP.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of that MLP.")


class PromptTuningMethod(_PromptLearning):
    """Prompt tuning: trained soft-prompt embeddings before the input."""

    name: Literal["prompt_tuning"] = Field("prompt_tuning", description="Method name.")
    init_text: str | None = Field(None, description="Initialize the soft prompt from this text's embeddings.")


class PTuningMethod(_PromptLearning):
    """P-tuning: a small encoder (MLP or LSTM) produces the virtual-token embeddings."""

    name: Literal["p_tuning"] = Field("p_tuning", description="Method name.")
    encoder_type: Literal["MLP", "LSTM"] = Field("MLP", description="The prompt encoder.")
    encoder_hidden_size: int = Field(128, ge=1, description="Hidden size of the prompt encoder.")


class IA3Method(StrictModel):
    """IA3: trained vectors that rescale keys, values and feed-forward activations."""

    name: Literal["ia3"] = Field("ia3", description="Method name.")
    target_modules: Union[Literal["auto"], list[str]] = Field(
        "auto", description="'auto' (PEFT's defaults for the architecture) or module names."
    )
    feedforward_modules: list[str] | None = Field(
        None, description="Which target modules are feed-forward (scaled on their input); with a target list."
    )


class BottleneckMethod(StrictModel):
    """Bottleneck adapters beside each block's attention and feed-forward output projections.

    A parallel adapter (He et al., 2022): down-project to ``size``, up-project, scale, add to the sublayer's
    output, at the places a Houlsby adapter sits. PEFT has no Houlsby adapter; this is its LoRA layer on the
    output projections, without the nonlinearity, so it saves, reloads and merges as a PEFT adapter.
    """

    name: Literal["bottleneck"] = Field("bottleneck", description="Method name.")
    size: int = Field(64, ge=1, le=4096, description="Bottleneck width (the rank of the adapter).")
    scaling: float = Field(4.0, gt=0, description="Factor on the adapter's output (He et al. found 4 works well).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")


class AdaLoraMethod(StrictModel):
    """AdaLoRA: LoRA whose rank budget is reallocated by importance during training."""

    name: Literal["adalora"] = Field("adalora", description="Method name.")
    init_r: int = Field(12, ge=1, description="Starting rank of every adapter.")
    target_r: int = Field(8, ge=1, description="Average rank after budget reallocation.")
    alpha: float = Field(32.0, gt=0, description="Scaling numerator.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: TargetModules = Field("auto", description="As for lora.")
    tinit: float = Field(0.1, ge=0, lt=1, description="Fraction of steps trained before pruning ranks starts.")
    tfinal: float = Field(0.2, ge=0, lt=1, description="Fraction of final steps with the rank budget fixed.")

    @model_validator(mode="after")
    def _budget(self) -> AdaLoraMethod:
        if self.target_r > self.init_r:
            raise ValueError("target_r must not exceed init_r")
        if self.tinit + self.tfinal >= 1:
            raise ValueError("tinit + tfinal must leave some steps for reallocation (their sum below 1)")
        return self


Method = Annotated[
    Union[
        LoraMethod, DoraMethod, QloraMethod, FullMethod, FreezeMethod, PrefixTuningMethod, PromptTuningMethod,
        PTuningMethod, IA3Method, AdaLoraMethod, BottleneckMethod,
    ],
    Field(discriminator="name"),
]
METHOD_NAMES = (
    "lora", "qlora", "dora", "full", "freeze", "prefix_tuning", "prompt_tuning", "p_tuning", "ia3", "adalora",
    "bottleneck",
)
ADAPTER_METHODS = (
    "lora", "qlora", "dora", "prefix_tuning", "prompt_tuning", "p_tuning", "ia3", "adalora", "bottleneck"
)
PROMPT_LEARNING_METHODS = ("prefix_tuning", "prompt_tuning", "p_tuning")


class SftTask(StrictModel):
    """Supervised fine-tuning on chat / instruction data (loss on the answers)."""

    name: Literal["sft"] = Field("sft", description="Task name.")


class PretrainTask(StrictModel):
    """Continued pre-training on raw text (``text`` records, loss on every token)."""

    name: Literal["pretrain"] = Field("pretrain", description="Task name.")


class DpoTask(StrictModel):
    """Direct preference optimization (TRL) on chosen / rejected pairs."""

    name: Literal["dpo"] = Field("dpo", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL tie to the reference model.")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant.")


class KtoTask(StrictModel):
    """Kahneman-Tversky optimization (TRL): learns from answers labelled good or bad; pairs are split."""

    name: Literal["kto"] = Field("kto", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL tie to the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of good answers.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of bad answers.")


class OrpoTask(StrictModel):
    """Odds-ratio preference optimization (TRL): SFT on the chosen answer plus an odds-ratio penalty on the
    rejected one, in one stage and without a reference model."""

    name: Literal["orpo"] = Field("orpo", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Weight of the odds-ratio term against the SFT loss (lambda).")


class ClassificationTask(StrictModel):
    """Sequence classification: a classification head on an encoder or decoder (``text`` / ``label`` data)."""

    name: Literal["classification"] = Field("classification", description="Task name.")
    labels: list[str] | None = Field(
        None, min_length=2, description="The label set in order (default: the sorted labels of the training data)."
    )


class Seq2SeqTask(StrictModel):
    """Sequence-to-sequence training of an encoder-decoder (t5, bart): summarization, translation, ..."""

    name: Literal["seq2seq"] = Field("seq2seq", description="Task name.")
    max_target_length: int = Field(128, ge=1, description="Targets longer than this are truncated.")


class QaTask(StrictModel):
    """Generative question answering over a context (``context`` / ``question`` / ``answer`` data)."""

    name: Literal["qa"] = Field("qa", description="Task name.")
    max_target_length: int = Field(64, ge=1, description="Answers longer than this are truncated (encoder-decoders).")


Task = Annotated[
    Union[SftTask, PretrainTask, DpoTask, KtoTask, OrpoTask, ClassificationTask, Seq2SeqTask, QaTask],
    Field(discriminator="name"),
]
TASK_NAMES = ("sft", "pretrain", "dpo", "kto", "orpo", "classification", "seq2seq", "qa")


class DataConfig(StrictModel):
    """Where the data is and how to read it."""

    train: str = Field(description="Training data file: .jsonl, .json, .csv or .parquet.")
    eval: str | None = Field(None, description="Evaluation data file (eval loss, early stopping).")
    format: DataFormat = Field(
        "auto",
        description="Record format: messages, alpaca, prompt_completion, text or classification; "
        "'auto' detects it from the first record's keys.",
    )
    system_prompt: str | None = Field(
        None, description="System message put before every conversation that has none."
    )
    train_on_prompt: bool = Field(
        False, description="Also compute the loss on prompt tokens (default: assistant tokens only)."
    )


class TrainSettings(StrictModel):
    """Optimization settings."""

    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(2.0e-4, gt=0, lt=1, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per device per forward pass.")
    eval_batch_size: int | None = Field(None, ge=1, description="Examples per eval batch (default: batch_size).")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate schedule.")
    warmup: float = Field(
        0.03, ge=0, description="Warm-up: a fraction of the steps when below 1, else a number of steps."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    max_seq_length: int = Field(1024, ge=8, description="Examples longer than this are truncated.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="'auto': bf16 autocast where the CPU or GPU supports it, else fp32."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    logging_steps: int = Field(5, ge=1, description="Log loss and learning rate every N steps.")
    eval_steps: int | None = Field(None, ge=1, description="Eval every N steps (default: each epoch).")
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (default: each epoch).")
    save_total_limit: int | None = Field(2, ge=1, description="Keep at most N checkpoints (null: all).")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evals without a better eval loss (needs data.eval)."
    )


class TrainConfig(StrictModel):
    """A fine-tuning run: model, method, data, optimization, seed and where the outputs go."""

    examples_hint: ClassVar[str] = (
        "'tuneforge config template lora > config.yaml' writes an example with every field and its allowed values"
    )

    model: str = Field(
        description="Model reference: a builtin alias (smollm2-135m, minilm-l6), a local model "
        "directory, a .gguf file, or a hub id already in the local Hugging Face cache."
    )
    method: Method = Field(
        default_factory=LoraMethod,
        description="Fine-tuning method: a name (lora, qlora, dora, full, freeze) or a mapping with "
        "'name' and the method's options.",
    )
    task: Task = Field(
        default_factory=SftTask,
        description="What is trained: sft (chat / instruction), pretrain (raw text), dpo, kto or orpo (preferences), "
        "classification, seq2seq (encoder-decoders) or qa; a name or a mapping with 'name' and the task's options.",
    )
    data: DataConfig = Field(description="Training and evaluation data.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimization settings.")
    seed: int = Field(42, description="Seed for initialization, shuffling and dropout.")
    output_dir: str = Field("runs/run", description="Folder for checkpoints, the adapter or model, and reports.")

    @field_validator("method", "task", mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _needs_eval_data(self) -> TrainConfig:
        if self.data.eval is None:
            if self.train.early_stopping_patience is not None:
                raise ValueError("train.early_stopping_patience needs data.eval: add an eval file")
            if self.train.eval_steps is not None:
                raise ValueError("train.eval_steps needs data.eval: add an eval file or remove eval_steps")
        return self

    @property
    def is_adapter(self) -> bool:
        """Whether the method trains an adapter (saved apart from the base model)."""
        return self.method.name in ADAPTER_METHODS
