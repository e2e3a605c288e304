"""What a llama.cpp context of the engine will allocate, estimated before it does, and a clear refusal when it
cannot fit.

The engine's context holds ``max_batch`` KV streams of ``n_ctx`` cells each (one per sequence, see
:mod:`tuneforge.serving.llamacpp_batch`), all allocated and cleared when the context is created: SmolLM2-135M
(30 layers, 3 KV heads of 64, F16 cache) takes 23,040 bytes a cell, 94 MB per 4096-cell stream, so
``--max-batch 256`` asks for 24 GB at once. The estimate is read from the model's shape (the GGUF file's
metadata, or a transformers config before the conversion), so a server refuses at startup with the figures
instead of being killed by the kernel's OOM killer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serving.llamacpp_batch import UBATCH  # prompt tokens computed at once: the compute graph is sized for it

log = logging.getLogger("tuneforge.serving")
CACHE_BYTES = 2  # llama.cpp's default K and V cache type: F16
FLOAT = 4
MB = 1_000_000


@dataclass(frozen=True)
class ModelShape:
    """The figures of a model that size a llama.cpp context.

    Attributes:
        layers: Transformer blocks.
        kv_heads: Key/value heads (grouped-query attention).
        key_dim: Width of one key head; ``value_dim`` of one value head.
        value_dim: See ``key_dim``.
        embedding: Hidden size.
        feed_forward: Width of the MLP.
        vocab: Vocabulary size (logits rows).
        context: The model's own context length (0: unknown).
    """

    layers: int
    kv_heads: int
    key_dim: int
    value_dim: int
    embedding: int
    feed_forward: int
    vocab: int
    context: int = 0


def shape_from_gguf(path: Path) -> ModelShape | None:
    """The shape of a GGUF model file, from its metadata (llama.cpp reads the header and the vocabulary only).

    Raises:
        TuneforgeError: llama.cpp cannot read the file.
    """
    from llama_cpp import _logger, llama_cpp

    _logger.set_verbose(False)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only, params.n_gpu_layers = True, 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise TuneforgeError(f"llama.cpp could not read {path}", hint="check that the file is a GGUF model")
    try:
        return shape_from_model(model, path=path)
    finally:
        llama_cpp.llama_model_free(model)


def shape_from_model(model: Any, *, path: Path | str = "the model") -> ModelShape | None:
    """The shape of a loaded ``llama_model_p``, from its GGUF metadata (``{arch}.block_count``, ...); ``None``
    when its figures are not single numbers (per-layer head counts): then the context is created unchecked.

    Raises:
        TuneforgeError: The metadata has no architecture or block count.
    """
    import ctypes

    from llama_cpp import llama_cpp

    buffer = ctypes.create_string_buffer(256)

    def value(key: str, default: Any = None) -> Any:
        if llama_cpp.llama_model_meta_val_str(model, key.encode(), buffer, len(buffer)) < 0:
            return default
        text = buffer.value.decode()
        return int(text) if text.isdigit() else text

    arch = value("general.architecture")
    layers = value(f"{arch}.block_count")
    if arch is None or layers is None:
        raise TuneforgeError(f"{path} has no llama.cpp model metadata (general.architecture, block_count)",
                             hint="give a GGUF model file made by llama.cpp's convert_hf_to_gguf.py or tuneforge")
    heads, embedding = value(f"{arch}.attention.head_count"), value(f"{arch}.embedding_length")
    head_dim = embedding // heads if isinstance(heads, int) and isinstance(embedding, int) and heads else None
    figures = {"layers": layers, "kv_heads": value(f"{arch}.attention.head_count_kv", heads),
               "key_dim": value(f"{arch}.attention.key_length", head_dim),
               "value_dim": value(f"{arch}.attention.value_length", head_dim), "embedding": embedding,
               "feed_forward": value(f"{arch}.feed_forward_length", 4 * (embedding or 0)),
               "vocab": llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model)),
               "context": value(f"{arch}.context_length", 0)}
    if not all(isinstance(figure, int) for figure in figures.values()):
        log.warning("%s: llama.cpp's KV cache is not estimated (figures %s)", path, figures)
        return None
    return ModelShape(**figures)


def shape_from_config(config: Any) -> ModelShape:
    """The shape of a transformers model config (a folder the engine will convert to GGUF)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(layers=config.num_hidden_layers, kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                      key_dim=head_dim, value_dim=head_dim, embedding=config.hidden_size,
                      feed_forward=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,
                      vocab=config.vocab_size, context=getattr(config, "max_position_embeddings", 0) or 0)


def context_bytes(shape: ModelShape, *, slots: int, n_ctx: int) -> tuple[int, int]:
    """``(KV cache, compute and output buffers)`` bytes of a context of ``slots`` streams of ``n_ctx`` cells.

    The KV cache is exact for llama.cpp's F16 cache: ``2 x layers x kv_heads x head_dim x cells x 2 bytes``. The
    compute buffer is sized for a ``UBATCH``-token step (its logits, activations and attention mask); the output
    buffer holds one logits row per sequence.
    """
    cells = slots * n_ctx
    kv = shape.layers * shape.kv_heads * (shape.key_dim + shape.value_dim) * cells * CACHE_BYTES
    tokens = min(UBATCH, n_ctx)
    compute = tokens * (shape.vocab + 4 * shape.embedding + 2 * shape.feed_forward) * FLOAT
    compute += tokens * n_ctx * CACHE_BYTES  # the attention mask of a step
    outputs = slots * shape.vocab * FLOAT
    return kv, compute + outputs


def available_bytes() -> int:
    """Memory this process may still take: the system's MemAvailable, or less under a cgroup (container) limit."""
    import psutil

    available = psutil.virtual_memory().available
    limit, usage = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    try:
        text = limit.read_text().strip()
        if text != "max":
            available = min(available, int(text) - int(usage.read_text()))
    except (OSError, ValueError):
        pass
    return available


def check_context_memory(shape: ModelShape | None, *, slots: int, n_ctx: int, available: int | None = None) -> int:
    """Refuse a context that cannot fit in memory, before llama.cpp allocates it.

    Args:
        shape: The model's shape (``None``: unknown, nothing is checked).
        slots: Sequences at once (``--max-batch``).
        n_ctx: KV cells of each sequence.
        available: Bytes free (default: :func:`available_bytes`).

    Returns:
        The estimated bytes.

    Raises:
        TuneforgeError: The estimate is over what is available; names ``--max-batch``, the figures and the remedy.
    """
    if shape is None:
        return 0
    kv, buffers = context_bytes(shape, slots=slots, n_ctx=n_ctx)
    available = available_bytes() if available is None else available
    if kv + buffers <= available:
        return kv + buffers
    per_slot = context_bytes(shape, slots=1, n_ctx=n_ctx)[0]
    fits = max((available - buffers) // per_slot, 0)
    raise TuneforgeError(
        f"--max-batch {slots} needs about {(kv + buffers) / MB:,.0f} MB for llama.cpp's context ({slots} KV streams "
        f"of {n_ctx} cells x {per_slot / MB:,.1f} MB = {kv / MB:,.0f} MB, plus {buffers / MB:,.0f} MB of compute "
        f"buffers), but only {available / MB:,.0f} MB of memory is available",
        hint=f"lower --max-batch (about {fits} fit now), or free memory" if fits else
        "free memory: not even one sequence's KV cache fits now")
