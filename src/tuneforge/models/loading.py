"""Load tokenizers and models from a resolved directory, with tuneforge's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A ChatML template for tokenizers that bring none (documented in README: "Chat templates").
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def load_tokenizer(path: str | Path, *, padding_side: str = "right") -> Any:
    """Load a tokenizer, giving it a pad token and a chat template where it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    tokenizer.padding_side = padding_side
    return tokenizer


def model_type_of(path: str | Path) -> str:
    """``config.model_type`` of a model directory, without loading weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).model_type


def load_model(path: str | Path, *, head: str | None = None, labels: list[str] | None = None) -> Any:
    """Load a model for inference with the head its use needs.

    Args:
        path: Model directory.
        head: ``causal``, ``seq2seq`` or ``classification``; by default seq2seq for encoder-decoders,
            causal otherwise.
        labels: Class names of a classification head, in id order.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    if head is None:
        head = "seq2seq" if getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False) else "causal"
    if head == "causal":
        return load_causal_lm(path)
    if head == "seq2seq":
        return AutoModelForSeq2SeqLM.from_pretrained(path, dtype=torch.float32)
    extra = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
             "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}
    config = AutoConfig.from_pretrained(path, **extra)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id
    return AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=torch.float32)


def load_causal_lm(path: str | Path, *, dtype: Any = None, quantization_config: Any = None, device_map: Any = None) -> Any:
    """Load a causal language model (fp32 by default: mixed precision is autocast, not storage)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization_config is not None:
        release_checkpoint_map(model)
    return model


def release_checkpoint_map(model: Any) -> int:
    """Copy the floating-point tensors that still view the checkpoint's memory map into the process's own memory.

    Quantizing while loading reads every page of the safetensors file; the tensors it leaves unquantized
    (embeddings, norms) are views of that memory map, which then stays resident for the whole run (measured on
    SmolLM2-135M 4-bit: 520 MiB of file pages held for the sake of 113 MiB of embeddings). After the copy the map
    is released (glibc's ``malloc_trim`` hands the loader's freed buffers back as well).

    Returns:
        How many tensors were copied.
    """
    import gc
    import itertools

    copied = 0
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.dtype.is_floating_point and tensor.device.type == "cpu":
            tensor.data = tensor.data.clone()
            copied += 1
    gc.collect()
    _malloc_trim()
    return copied


def _malloc_trim() -> None:
    """Return freed heap memory to the system (glibc only; elsewhere nothing)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        getattr(ctypes.CDLL(name), "malloc_trim")(0)
    except (OSError, AttributeError, TypeError):
        pass
