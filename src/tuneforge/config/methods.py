"""Fine-tuning methods: each one's config class, registered with its strategy (see :mod:`tuneforge.config.registry`).

A new method is one decorated class here (its typed options) and one strategy module under
``tuneforge.training.methods``; the ``method`` union of :class:`~tuneforge.config.models.TrainConfig`, the names
in help texts and errors, and ``tuneforge config template NAME`` follow from the registration. ``title`` and
``learning_rate`` are what the method's template shows; a hand-written method block with comments can sit in
``templates/methods/NAME.yaml`` (else the block is generated from the class's defaults).
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tuneforge.config.base import NamedConfig, TargetModules
from tuneforge.config.registry import Registry



class MethodConfig(NamedConfig):
    """Base of every method's config class."""


METHODS: Registry[MethodConfig] = Registry("method", field="method.name")


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return METHODS.names()


@METHODS.register(
    strategy="tuneforge.training.methods.lora:LORA",
    title="LoRA fine-tuning",
    learning_rate="2.0e-4",
)
class LoraMethod(MethodConfig):
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
    def _parameters_without_dropout(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value and info.data.get("dropout", 0) != 0:
            raise ValueError("PEFT adapts parameters (fused experts) without dropout: set method.dropout: 0")
        return value


@METHODS.register(
    strategy="tuneforge.training.methods.qlora:QLORA",
    title="QLoRA, LoRA on a 4-bit base model (needs bitsandbytes: pip install 'tuneforge[qlora]')",
    learning_rate="2.0e-4",
)
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


@METHODS.register(
    strategy="tuneforge.training.methods.lora:LORA",
    title="DoRA (weight-decomposed LoRA)",
    learning_rate="2.0e-4",
)
class DoraMethod(LoraMethod):
    """Weight-decomposed LoRA (DoRA): LoRA on the direction, a trained magnitude vector."""

    name: Literal["dora"] = Field("dora", description="Method name.")


@METHODS.register(
    strategy="tuneforge.training.methods.full:FULL",
    title="full fine-tuning (every weight trains; use a lower learning rate)",
    learning_rate="2.0e-5",
)
class FullMethod(MethodConfig):
    """Full fine-tuning: every weight is trained."""

    name: Literal["full"] = Field("full", description="Method name.")


@METHODS.register(
    strategy="tuneforge.training.methods.freeze:FREEZE",
    title="freeze tuning (only the last layers train)",
    learning_rate="2.0e-5",
)
class FreezeMethod(MethodConfig):
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


class _PromptLearning(MethodConfig):
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Trained virtual tokens put before the input.")


@METHODS.register(
    strategy="tuneforge.training.methods.prompt_learning:PROMPT_LEARNING",
    title="prefix tuning (trained key/value prefixes; cannot be merged)",
    learning_rate="3.0e-2",
)
class PrefixTuningMethod(_PromptLearning):
    """Prefix tuning: trained key/value prefixes in every attention layer."""

    name: Literal["prefix_tuning"] = Field("prefix_tuning", description="Method name.")
    prefix_projection: bool = Field(False, description="Reparameterize the prefix through an MLP.")
    encoder_hidden_size: int | None = Field(None, ge=1, description="Hidden size of that MLP.")


@METHODS.register(
    strategy="tuneforge.training.methods.prompt_learning:PROMPT_LEARNING",
    title="prompt tuning (a trained soft prompt; cannot be merged)",
    learning_rate="3.0e-1",
)
class PromptTuningMethod(_PromptLearning):
    """Prompt tuning: trained soft-prompt embeddings before the input."""

    name: Literal["prompt_tuning"] = Field("prompt_tuning", description="Method name.")
    init_text: str | None = Field(None, description="Initialize the soft prompt from this text's embeddings.")


@METHODS.register(
    strategy="tuneforge.training.methods.prompt_learning:PROMPT_LEARNING",
    title="p-tuning (an encoder makes the virtual tokens; cannot be merged)",
    learning_rate="1.0e-2",
)
class PTuningMethod(_PromptLearning):
    """P-tuning: a small encoder (MLP or LSTM) produces the virtual-token embeddings."""

    name: Literal["p_tuning"] = Field("p_tuning", description="Method name.")
    encoder_type: Literal["MLP", "LSTM"] = Field("MLP", description="The prompt encoder.")
    encoder_hidden_size: int = Field(128, ge=1, description="Hidden size of the prompt encoder.")


@METHODS.register(
    strategy="tuneforge.training.methods.ia3:IA3",
    title="IA3 (trained rescaling vectors, very few parameters)",
    learning_rate="3.0e-3",
)
class IA3Method(MethodConfig):
    """IA3: trained vectors that rescale keys, values and feed-forward activations."""

    name: Literal["ia3"] = Field("ia3", description="Method name.")
    target_modules: Union[Literal["auto"], list[str]] = Field(
        "auto", description="'auto' (PEFT's defaults for the architecture) or module names."
    )
    feedforward_modules: list[str] | None = Field(
        None, description="Which target modules are feed-forward (scaled on their input); with a target list."
    )


@METHODS.register(
    strategy="tuneforge.training.methods.adalora:ADALORA",
    title="AdaLoRA (rank budget reallocated by importance)",
    learning_rate="2.0e-4",
)
class AdaLoraMethod(MethodConfig):
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


@METHODS.register(
    strategy="tuneforge.training.methods.bottleneck:BOTTLENECK",
    title="bottleneck adapters (parallel, beside each attention and MLP output)",
    learning_rate="1.0e-4",
)
class BottleneckMethod(MethodConfig):
    """Bottleneck adapters beside each block's attention and feed-forward output projections.

    A parallel adapter (He et al., 2022): down-project to ``size``, up-project, scale, add to the sublayer's
    output, at the places a Houlsby adapter sits. PEFT has no Houlsby adapter; this is its LoRA layer on the
    output projections, without the nonlinearity, so it saves, reloads and merges as a PEFT adapter.
    """

    name: Literal["bottleneck"] = Field("bottleneck", description="Method name.")
    size: int = Field(64, ge=1, le=4096, description="Bottleneck width (the rank of the adapter).")
    scaling: float = Field(4.0, gt=0, description="Factor on the adapter's output (He et al. found 4 works well).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter's input.")

PromptLearningMethod = Union[PrefixTuningMethod, PromptTuningMethod, PTuningMethod]
