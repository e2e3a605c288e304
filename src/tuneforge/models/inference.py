"""Load any model reference or run directory for inference: base, base + adapter, or a full model."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import NotFoundError
from tuneforge.models.loading import load_model, load_tokenizer
from tuneforge.models.resolve import resolve_model
from tuneforge.storage.rundir import COMPLETED, RunDir

ADAPTER_CONFIG = "adapter_config.json"  # what PEFT writes into an adapter folder
LABELS = "labels.json"  # the class names of a classification head, saved beside the weights by training
log = logging.getLogger("tuneforge.models")


@dataclass(frozen=True)
class ModelSource:
    """Where the weights of a loadable model come from.

    Attributes:
        base: Directory of the base (or full) model.
        adapter: Directory of a PEFT adapter on top of ``base``, if any.
        head: ``classification`` for classifiers, else ``None`` (causal or seq2seq by the model).
    """

    base: Path
    adapter: Path | None = None
    head: str | None = None


def locate(reference: str, *, cache_dir: Path) -> ModelSource:
    """Find the weights behind a model reference, a run directory or an adapter directory.

    Args:
        reference: Builtin alias, model directory, .gguf file, hub id, run directory or adapter directory.
        cache_dir: Where GGUF files are converted once (``Settings.model_cache_dir``).

    Raises:
        NotFoundError: The model cannot be found, or the run has not completed.
    """
    path = Path(reference).expanduser()
    run = RunDir(path)
    marker = run.read_marker()
    if marker is not None:
        if marker.get("status") != COMPLETED:
            raise NotFoundError(
                f"run {path} has not completed (status: {marker.get('status')})",
                hint="finish it with 'tuneforge train CONFIG --resume', or use one of its checkpoints",
            )
        head = "classification" if marker.get("task") == "classification" else None
        if run.has_adapter():
            return ModelSource(Path(marker["base_model"]), run.adapter, head)
        return ModelSource(run.model, None, head)
    if (path / ADAPTER_CONFIG).is_file():
        adapter = json.loads((path / ADAPTER_CONFIG).read_text())
        head = "classification" if adapter.get("task_type") == "SEQ_CLS" else None
        return ModelSource(resolve_model(adapter["base_model_name_or_path"], cache_dir=cache_dir).path, path, head)
    return ModelSource(resolve_model(reference, cache_dir=cache_dir).path)


def merge_adapter(model: Any) -> Any:
    """Fold a PEFT model's adapter into its base weights; prompt-learning adapters (virtual tokens) stay."""
    if model.active_peft_config.is_prompt_learning:
        return model
    return model.merge_and_unload()


def chat_template_warning(source: ModelSource, tokenizer: Any) -> str | None:
    """A warning when an adapter was trained with another chat template than its base model's, else ``None``.

    ``tokenizer`` is the adapter's (saved with it by training, with its ``chat_template.jinja``): generate and eval
    format prompts with it; anything that uses the base model's template (a server given only the base) does not
    match what the adapter learned.
    """
    if source.adapter is None or load_tokenizer(source.base).chat_template == tokenizer.chat_template:
        return None
    return (f"{source.adapter} was trained with a chat template that differs from its base model's; prompts use "
            f"the adapter's ({source.adapter / 'chat_template.jinja'}), give a server that one too")


def load_for_inference(reference: str, *, cache_dir: Path, merge: bool = False) -> tuple[Any, Any, ModelSource]:
    """Load a model and tokenizer for generation.

    Args:
        reference: Builtin alias, model directory, .gguf file, hub id, run directory or adapter directory.
        cache_dir: Where GGUF files are converted once (``Settings.model_cache_dir``).
        merge: Fold an adapter into the base weights (faster inference, no PEFT wrapper); prompt-learning
            adapters stay unmerged.

    Returns:
        The model (in eval mode), its tokenizer, and where its weights came from.
    """
    source = locate(reference, cache_dir=cache_dir)
    tokenizer = load_tokenizer(source.adapter or source.base)  # an adapter's: the chat template it trained with
    warning = chat_template_warning(source, tokenizer)
    if warning:
        log.warning("warning: %s", warning)
    labels_file = (source.adapter or source.base) / LABELS
    labels = json.loads(labels_file.read_text()) if labels_file.is_file() else None
    model = load_model(source.base, head=source.head, labels=labels)
    if source.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter)
        if merge:
            model = merge_adapter(model)
    model.eval()
    return model, tokenizer, source
