"""Prompt-learning methods through PEFT: prefix tuning, prompt tuning, p-tuning.

They add trained virtual tokens instead of changing weights, so they cannot be merged into the base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.methods import PrefixTuningMethod, PromptLearningMethod, PTuningMethod
from tuneforge.training.methods import MethodStrategy, PrepareContext

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel
    from transformers import PreTrainedModel


def prompt_learning_config(
    method: PromptLearningMethod, context: PrepareContext, *, tokenizer_path: str | None = None
) -> PeftConfig:
    """The PEFT config of a prefix_tuning / prompt_tuning / p_tuning method block."""
    import peft

    common = {"task_type": context.task_type, "num_virtual_tokens": method.num_virtual_tokens}
    if isinstance(method, PrefixTuningMethod):
        return peft.PrefixTuningConfig(
            **common, prefix_projection=method.prefix_projection, encoder_hidden_size=method.encoder_hidden_size
        )
    if isinstance(method, PTuningMethod):
        return peft.PromptEncoderConfig(
            **common, encoder_reparameterization_type=method.encoder_type, encoder_hidden_size=method.encoder_hidden_size
        )
    if method.init_text:
        return peft.PromptTuningConfig(
            **common, prompt_tuning_init="TEXT", prompt_tuning_init_text=method.init_text,
            tokenizer_name_or_path=tokenizer_path,
        )
    return peft.PromptTuningConfig(**common)


def prepare_prompt_learning(
    model: PreTrainedModel, method: PromptLearningMethod, context: PrepareContext
) -> PeftModel:
    """Wrap ``model`` with trained virtual tokens."""
    from peft import get_peft_model

    return get_peft_model(model, prompt_learning_config(method, context, tokenizer_path=model.name_or_path))


PROMPT_LEARNING: MethodStrategy[PromptLearningMethod] = MethodStrategy(
    trains_adapter=True, prepare=prepare_prompt_learning, mergeable=False
)
