"""Export step: GGUF for llama.cpp (Q8_0, Q4_0, F16, F32; a LoRA adapter merged, or kept apart as a GGUF LoRA
adapter over the quantized base) and ONNX for onnxruntime (optionally int8).

The exported file is measured as its runtime runs it: the GGUF through llama.cpp when llama-cpp-python is
installed (else dequantized through transformers' GGUF loader, which reproduces the quantized weights), the
ONNX model through onnxruntime.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import ExportStep
from tuneforge.compression.stage import Stage, StepContext, StepStrategy, step_error
from tuneforge.errors import MissingDependencyError
from tuneforge.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


def check(step: ExportStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse an architecture the writer does not support, or a missing exporter, before any work."""
    if step.format == "gguf":
        from tuneforge.compression.export.gguf_writer import ARCHITECTURES, pre_tokenizer_name

        if config.model_type not in ARCHITECTURES:
            raise step_error(f"the GGUF writer supports {', '.join(ARCHITECTURES)} models, not '{config.model_type}'",
                             context_index=index, file=file, field_name="format",
                             hint="export this model with format: onnx, or convert it with llama.cpp's own "
                             "convert_hf_to_gguf.py")
        folder = Path(getattr(config, "_name_or_path", "") or ".")
        if (folder / "tokenizer.json").is_file() and pre_tokenizer_name(folder) is None:
            raise step_error(f"the tokenizer of {folder} is not a byte-level BPE that llama.cpp knows (gpt-2, smollm)",
                             context_index=index, file=file, field_name="format",
                             hint="export with format: onnx instead")
        return
    from tuneforge.compression.export.onnx_export import check_onnx

    check_onnx(step, config, index=index, file=file)


def apply(stage: Stage, step: ExportStep, context: StepContext) -> Stage:
    """Write the export into ``context.workdir`` and return a stage that runs it."""
    if step.format == "onnx":
        from tuneforge.compression.export.onnx_export import export_onnx

        return export_onnx(stage, step, context)
    return _gguf(stage, step, context)


def _gguf(stage: Stage, step: ExportStep, context: StepContext) -> Stage:
    logging.getLogger("gguf").setLevel(logging.WARNING)
    path = context.workdir / f"model.{step.quantization}.gguf"
    context.progress(ProgressEvent(ProgressKind.STAGE, f"writing {path.name}"))
    separate = step.adapter == "separate" and stage.adapter is not None and stage.base is not None
    lora, details = _write_gguf(stage, path, quantization=step.quantization, separate=separate)
    n_ctx = min(int(stage.model.config.max_position_embeddings), 4096)
    broken = _llama_cpp_broken(path, n_ctx=n_ctx, lora_path=lora)
    if broken is None:
        from tuneforge.compression.export.llamacpp import LlamaCppModel
        from tuneforge.evaluation.generation import stop_ids

        model = LlamaCppModel(path, config=stage.model.config, eos_token_ids=stop_ids(stage.model, stage.tokenizer),
                              n_ctx=n_ctx, lora_path=lora)
        details["measured_with"] = "llama.cpp (llama-cpp-python)" + (", LoRA applied at run time" if lora else "")
    else:
        if broken != _NOT_INSTALLED:
            context.progress(ProgressEvent(ProgressKind.MESSAGE, f"warning: {broken}; measuring the GGUF through "
                                           "transformers' GGUF loader instead (rebuild or change llama-cpp-python)"))
        model = _dequantized(path, adapter=stage.adapter if lora else None)
        details["measured_with"] = (f"transformers' GGUF loader (dequantized weights{', PEFT adapter' if lora else ''}"
                                    f"; latency is fp32 PyTorch's); {broken}")
    label = f"gguf {step.quantization}" + (" + LoRA adapter" if lora else "")
    return Stage(model, stage.tokenizer, context.workdir, label, stage.parameters, stage.nonzero_parameters,
                 ["cpu", "cuda"], details)


def _write_gguf(stage: Stage, path: Path, *, quantization: str, separate: bool) -> tuple[Path | None, dict[str, Any]]:
    """Write the merged model, or (``separate``) the unmerged base, ``adapter.gguf`` and the adapter's tokenizer
    files beside it."""
    from tuneforge.compression.export.gguf_writer import write_gguf

    if not separate:
        counts = write_gguf(stage.model, stage.tokenizer, stage.files, path, quantization=quantization)
        return None, {"file": path.name, "tensor_types": counts}
    import torch

    from tuneforge.compression.export.gguf_lora import write_gguf_lora
    from tuneforge.models.loading import load_causal_lm

    assert stage.base is not None and stage.adapter is not None
    base = load_causal_lm(stage.base, dtype=torch.float32).eval()
    counts = write_gguf(base, stage.tokenizer, stage.files, path, quantization=quantization)
    lora = path.parent / "adapter.gguf"
    adapted = write_gguf_lora(stage.adapter, base.config, lora)
    stage.tokenizer.save_pretrained(path.parent)  # the adapter's chat template, for a server of the two files
    del base
    return lora, {"file": path.name, "tensor_types": counts, "adapter_file": lora.name, "adapter_tensors": adapted}


_NOT_INSTALLED = "install llama-cpp-python to measure llama.cpp"


def _llama_cpp_broken(path: Path, *, n_ctx: int, lora_path: Path | None = None) -> str | None:
    """None when llama.cpp runs the file; else why it cannot (not installed, or a build that crashes on it)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return _NOT_INSTALLED
    from tuneforge.compression.export.llamacpp import probe

    return probe(path, n_ctx=min(n_ctx, 256), lora_path=lora_path)


def _dequantized(path: Path, *, adapter: Path | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if importlib.util.find_spec("gguf") is None:  # pragma: no cover - gguf is a core dependency
        raise MissingDependencyError("gguf", extra="compress", purpose="reading a GGUF export")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    if adapter is not None:  # the full-precision adapter over the quantized base, as llama.cpp applies it
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval()


EXPORT: StepStrategy[ExportStep] = StepStrategy(check, apply)
