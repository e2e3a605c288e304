"""Write a PEFT LoRA adapter as a GGUF LoRA adapter that llama.cpp applies at run time over a GGUF base.

The layout is llama.cpp's own (``convert_lora_to_gguf.py``): ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, and for every adapted weight ``<gguf name>.lora_a``
(``[rank, in]``) and ``<gguf name>.lora_b`` (``[out, rank]``) under the base tensor's llama.cpp name.
llama.cpp scales ``B @ A`` by ``alpha / rank``; PEFT's own scale (``lora_alpha / r``, ``/ sqrt(r)`` with
rsLoRA, per-module ranks and alphas) is folded into ``lora_b`` wherever the two differ, so every module gets
exactly PEFT's update.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tuneforge.compression.export.gguf_writer import ARCHITECTURES, unrotate
from tuneforge.errors import ConfigError

PREFIX = "base_model.model."


def check_lora_adapter(adapter: Path, *, field: str = "adapter", file: str | None = None) -> dict[str, Any]:
    """The adapter's config, when llama.cpp can apply it unmerged; else a :class:`ConfigError` that says why
    (naming ``field`` of ``file``).

    Raises:
        ConfigError: Not a LoRA adapter, DoRA, or one that trains whole modules (``modules_to_save``) or the
            embeddings (llama.cpp's runtime adapters hold low-rank updates of linear layers only).
    """
    config = json.loads((adapter / "adapter_config.json").read_text())
    reason = None
    if config.get("peft_type") != "LORA":
        reason = f"a {config.get('peft_type')} adapter, not LoRA"
    elif config.get("use_dora"):
        reason = "a DoRA adapter (its magnitude vectors are not a low-rank update)"
    elif config.get("modules_to_save"):
        reason = f"an adapter that trains whole modules ({', '.join(config['modules_to_save'])})"
    if reason is not None:
        raise ConfigError(f"{adapter} is {reason}; llama.cpp applies plain LoRA adapters only", field=field, file=file,
                          hint="export with adapter: merged (the default), which folds it into the base weights")
    return config


def write_gguf_lora(adapter: Path, model_config: Any, path: Path) -> dict[str, int]:
    """Write the LoRA adapter folder ``adapter`` (PEFT's layout) of a model with ``model_config`` to ``path``.

    Returns:
        Counts of adapted tensors by llama.cpp tensor kind (``attn_q``, ``ffn_up``, ...), for the report.

    Raises:
        ConfigError: See :func:`check_lora_adapter`, or a target module llama.cpp has no tensor for.
    """
    alpha, tensors = lora_tensors(adapter, model_config)
    writer = _adapter_writer(path, model_config, alpha=alpha)
    counts: dict[str, int] = {}
    for name, (a, b) in tensors.items():
        writer.add_tensor(name + ".lora_a", a)
        writer.add_tensor(name + ".lora_b", b)
        kind = name.split(".")[2] if name.startswith("blk.") else name
        counts[kind] = counts.get(kind, 0) + 1
    _finish(writer)
    return counts


def lora_tensors(adapter: Path, model_config: Any) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """The adapter's llama.cpp alpha and ``gguf tensor name -> (A [r, in], B [out, r])`` (float32 numpy), B scaled
    so that llama.cpp's ``alpha / r`` times ``B @ A`` is PEFT's update exactly.

    Raises:
        ConfigError: See :func:`write_gguf_lora`.
    """
    import gguf

    config = check_lora_adapter(adapter)
    pairs = _pairs(adapter)
    alpha = float(config.get("lora_alpha") or config.get("r") or 8)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, model_config.num_hidden_layers)
    heads, kv_heads = model_config.num_attention_heads, model_config.num_key_value_heads
    tensors: dict[str, tuple[Any, Any]] = {}
    for module, (a, b) in sorted(pairs.items()):
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None or name.startswith(("token_embd", "output.")):
            raise ConfigError(f"{adapter} adapts '{module}', which llama.cpp's runtime LoRA does not apply",
                              field="adapter", hint="export with adapter: merged, or train LoRA on the attention "
                              "and MLP projections only")
        b = b * (_peft_scale(config, module, rank=a.shape[0]) / (alpha / a.shape[0]))  # PEFT's scale, exactly
        if module.endswith("q_proj"):
            b = unrotate(b, heads)  # rows of B @ A are rows of W: the same rotary reorder as the base
        elif module.endswith("k_proj"):
            b = unrotate(b, kv_heads)
        tensors[name] = (a.astype("float32"), b.astype("float32"))
    return alpha, tensors


def read_gguf_lora(path: Path) -> tuple[float, dict[str, tuple[Any, Any]]]:
    """A GGUF LoRA adapter file's alpha and tensors, as :func:`lora_tensors` gives them."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    field = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    alpha = float(field.contents()) if field is not None else 0.0
    parts: dict[str, list[Any]] = {}
    for tensor in reader.tensors:
        for suffix, index in ((".lora_a", 0), (".lora_b", 1)):
            if tensor.name.endswith(suffix):
                data = np.asarray(tensor.data, dtype=np.float32).reshape([int(n) for n in reversed(tensor.shape)])
                parts.setdefault(tensor.name[:-len(suffix)], [None, None])[index] = data
    return alpha, {name: (a, b) for name, (a, b) in parts.items() if a is not None and b is not None}


def write_stacked_gguf_lora(slots: list[tuple[float, dict[str, tuple[Any, Any]]] | None], model_config: Any,
                            path: Path, *, rank: int) -> None:
    """Write several adapters (:func:`lora_tensors`' output, ``None`` for a free slot) as one per-sequence GGUF LoRA
    adapter (``adapter.lora.per_sequence``, scripts/llamacpp_seq_lora.patch): slot ``i`` holds its adapter's rank
    components ``i * rank`` to ``i * rank + r`` of every tensor (zeros elsewhere, and where it adapts no such
    weight), its whole scale folded into B (alpha 0: llama.cpp scales by 1). A sequence's mask row of ones over
    its slot gives it exactly its adapter's update.
    """
    import numpy as np

    shapes: dict[str, tuple[int, int]] = {}
    for slot in slots:
        for name, (a, b) in (slot[1] if slot else {}).items():
            shapes[name] = (a.shape[1], b.shape[0])
    width = rank * len(slots)
    writer = _adapter_writer(path, model_config, alpha=0.0)
    writer.add_bool("adapter.lora.per_sequence", True)
    for name in sorted(shapes):
        stacked_a = np.zeros((width, shapes[name][0]), dtype=np.float32)
        stacked_b = np.zeros((shapes[name][1], width), dtype=np.float32)
        for index, slot in enumerate(slots):
            if slot is None or name not in slot[1]:
                continue
            alpha, (a, b) = slot[0], slot[1][name]
            start = index * rank
            stacked_a[start:start + a.shape[0]] = a
            stacked_b[:, start:start + a.shape[0]] = b * (alpha / a.shape[0] if alpha else 1.0)
        writer.add_tensor(name + ".lora_a", stacked_a)
        writer.add_tensor(name + ".lora_b", stacked_b)
    _finish(writer)


def _adapter_writer(path: Path, model_config: Any, *, alpha: float) -> Any:
    import gguf

    writer = gguf.GGUFWriter(str(path), ARCHITECTURES[model_config.model_type])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    return writer


def _finish(writer: Any) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _pairs(adapter: Path) -> dict[str, tuple[Any, Any]]:
    """``module name -> (A [r, in], B [out, r])`` as float32 numpy arrays, from the adapter's weights."""
    from safetensors.numpy import load_file

    file = adapter / "adapter_model.safetensors"
    if not file.is_file():
        raise ConfigError(f"{adapter} has no adapter_model.safetensors", field="adapter",
                          hint="save the adapter with safetensors (PEFT's default)")
    pairs: dict[str, list[Any]] = {}
    for key, value in load_file(str(file)).items():
        for part, index in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
            if key.endswith(part):
                module = key[len(PREFIX):-len(part)] if key.startswith(PREFIX) else key[:-len(part)]
                pairs.setdefault(module, [None, None])[index] = value.astype("float32")
    return {module: (a, b) for module, (a, b) in pairs.items() if a is not None and b is not None}


def _peft_scale(config: dict[str, Any], module: str, *, rank: int) -> float:
    """The factor PEFT multiplies ``B @ A`` by in ``module`` (its rank and alpha patterns included)."""
    alpha = float(config.get("lora_alpha") or rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if module == pattern or module.endswith("." + pattern):
            alpha = float(value)
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
