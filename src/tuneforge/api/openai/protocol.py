"""An OpenAI fine-tuning request, translated into tuneforge's TrainConfig.

``method.type`` ``supervised`` trains the ``sft`` task, ``dpo`` the ``dpo`` task; ``hyperparameters``
(``n_epochs``, ``batch_size``, ``learning_rate_multiplier``, ``beta``) accept ``"auto"``, resolved from
the number of training examples the way OpenAI documents it. Extra tuneforge fields (``priority`` and a
``tuneforge`` block with the PEFT ``method`` and ``train`` overrides) are additive.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints, field_validator

from tuneforge.config.methods import METHODS, MethodConfig
from tuneforge.config.models import TrainSettings
from tuneforge.services.catalog import SUFFIX_PATTERN

Auto = Literal["auto"]
# OpenAI's documented ranges; strict: "3" and true are not numbers (a 400 naming the field).
Epochs = Annotated[StrictInt, Field(ge=1, le=50)]
BatchSize = Annotated[StrictInt, Field(ge=1, le=256)]
Multiplier = Annotated[Union[StrictFloat, StrictInt], Field(gt=0, le=10)]
Beta = Annotated[Union[StrictFloat, StrictInt], Field(gt=0, le=2)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
FileId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_SEED = 2**31 - 1


class Hyperparameters(BaseModel):
    """OpenAI's hyperparameters; ``"auto"`` lets the platform choose."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n_epochs: Union[Auto, Epochs] = Field("auto", description="Passes over the training data (1-50 or auto).")
    batch_size: Union[Auto, BatchSize] = Field("auto", description="Examples per step (1-256 or auto).")
    learning_rate_multiplier: Union[Auto, Multiplier] = Field(
        "auto", description="Multiplies the method's base learning rate (train.learning_rate) (0-10, or auto: 1)."
    )
    beta: Union[Auto, Beta] = Field(
        "auto", description="DPO only: strength of the tie to the reference (0-2, auto: 0.1).")


class _MethodBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    hyperparameters: Hyperparameters | None = None


class OpenAIMethod(BaseModel):
    """OpenAI's ``method`` object."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised", "dpo"] = Field("supervised", description="supervised (sft) or dpo.")
    supervised: _MethodBlock | None = None
    dpo: _MethodBlock | None = None


class TuneforgeOptions(BaseModel):
    """tuneforge's own, additive options of an OpenAI-style job."""

    model_config = ConfigDict(extra="forbid")

    method: MethodConfig | None = Field(None, description="The PEFT method and its options (default: lora).")
    train: dict[str, Any] = Field(default_factory=dict, description="Overrides of TrainConfig.train fields.")
    nproc: int = Field(1, ge=1, le=64, description="Training processes (one per GPU); above 1 the job runs under "
                       "torchrun with train.distributed, on as many GPUs of a worker started with --gpus.")

    @field_validator("method", mode="before")
    @classmethod
    def _name_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


METHODS.bind(TuneforgeOptions, "method", wrap=lambda union: Optional[union],  # noqa: UP007
             description="The method ({names}) and its options (default: lora).")


class OpenAIJobRequest(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs``: bounded and strictly typed (no coercion of "3" or true)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(max_length=256, description="Base model name (a builtin alias or one the server registers).")
    training_file: FileId = Field(description="Id of an uploaded file with purpose fine-tune.")
    validation_file: FileId | None = Field(None, description="Id of an uploaded validation file.")
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated by OpenAI in favour of method.")
    method: OpenAIMethod | None = Field(None, description="supervised or dpo, with hyperparameters.")
    suffix: str | None = Field(None, pattern=SUFFIX_PATTERN,
                               description="Up to 64 letters, digits, '.', '_' or '-' in the fine-tuned model's name.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed, 0 to 2^31-1 (random when absent; the "
                             "job reports it).")
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None, max_length=16, description="Up to 16 key-value pairs (keys up to 64, values up to 512 characters).")
    integrations: list[dict[str, Any]] | None = Field(None, description="Not supported; must be empty.")
    priority: int = Field(0, ge=-1000, le=1000, description="tuneforge: higher runs first (-1000 to 1000).")
    tuneforge: TuneforgeOptions | None = Field(None, description="tuneforge: PEFT method and train overrides.")

    @property
    def method_type(self) -> str:
        """``supervised`` or ``dpo``."""
        return self.method.type if self.method else "supervised"

    def chosen_hyperparameters(self) -> Hyperparameters:
        """The method's hyperparameters, else the top-level ones, else all auto."""
        block = getattr(self.method, self.method_type, None) if self.method else None
        if block is not None and block.hyperparameters is not None:
            return block.hyperparameters
        return self.hyperparameters or Hyperparameters()


def resolve_hyperparameters(hp: Hyperparameters, *, examples: int, method_type: str) -> dict[str, Any]:
    """Replace ``"auto"`` with numbers for a file of ``examples`` examples.

    n_epochs: enough passes for about 100 example-visits on small files, 3 on medium ones, fewer on
    files over 25,000 examples (OpenAI's documented default). batch_size: about 0.2% of the examples,
    1 to 32. learning_rate_multiplier: 1. beta (dpo): 0.1.
    """
    n_epochs = hp.n_epochs
    if n_epochs == "auto":
        if examples * 3 < 100:
            n_epochs = min(25, math.ceil(100 / max(examples, 1)))
        elif examples * 3 > 25_000:
            n_epochs = max(1, 25_000 // examples)
        else:
            n_epochs = 3
    batch_size = hp.batch_size if hp.batch_size != "auto" else min(32, max(1, round(examples * 0.002)))
    multiplier = hp.learning_rate_multiplier if hp.learning_rate_multiplier != "auto" else 1.0
    resolved: dict[str, Any] = {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": multiplier}
    if method_type == "dpo":
        resolved["beta"] = hp.beta if hp.beta != "auto" else 0.1
    return resolved


def to_train_config(request: OpenAIJobRequest, *, model_path: str, training_path: str,
                    validation_path: str | None, hyperparameters: dict[str, Any], seed: int,
                    output_dir: str, save_total_limit: int | None = 3) -> dict[str, Any]:
    """The TrainConfig (as a mapping, validated by the caller) that trains ``request``; it keeps the newest
    ``save_total_limit`` checkpoints (the server's ``checkpoint_retention``) unless ``tuneforge.train`` says."""
    options = request.tuneforge or TuneforgeOptions()
    base_lr = options.train.get("learning_rate", TrainSettings.model_fields["learning_rate"].default)
    train = {
        "epochs": hyperparameters["n_epochs"],
        "batch_size": hyperparameters["batch_size"],
        "save_total_limit": save_total_limit,
        "logging_steps": 1,
        **options.train,
        "learning_rate": base_lr * hyperparameters["learning_rate_multiplier"],
    }
    task: dict[str, Any] = {"name": "sft"}
    if request.method_type == "dpo":
        task = {"name": "dpo", "beta": hyperparameters["beta"]}
    return {
        "model": model_path,
        "method": options.method.model_dump() if options.method else {"name": "lora"},
        "task": task,
        "data": {"train": training_path, "eval": validation_path},
        "train": train,
        "seed": seed,
        "output_dir": output_dir,
    }
