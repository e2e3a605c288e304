"""ONNX export for onnxruntime, with onnxruntime's int8 quantization (dynamic, or static from calibration data).

optimum's exporter (``optimum-onnx`` 0.1) requires transformers < 5, which tuneforge does not run on; the
graph is exported with PyTorch's own ONNX exporter (``torch.onnx.export``, dynamo) instead: one graph from
``input_ids`` and ``attention_mask`` to the logits, with dynamic batch and sequence axes and no KV cache, so
each generated token re-reads the whole sequence (latency figures say so).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.compression.recipe import ExportStep
from tuneforge.compression.stage import Stage, StepContext
from tuneforge.errors import MissingDependencyError
from tuneforge.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

FILE = "model.onnx"


def check_onnx(step: ExportStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse when onnx, onnxscript (the exporter's) or onnxruntime is missing, before any work."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, extra="onnx", purpose="export format 'onnx'")


class _LogitsOnly(torch.nn.Module):
    """The causal LM as one graph: (input_ids [b, t], attention_mask [b, t]) -> logits [b, t, vocab]."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def export_onnx(stage: Stage, step: ExportStep, context: StepContext) -> Stage:
    """Export to ``model.onnx`` (quantized in place of the float graph when asked) and run it with onnxruntime."""
    folder = context.workdir
    float_path = context.scratch / FILE if step.quantization else folder / FILE
    context.progress(ProgressEvent(ProgressKind.STAGE, "exporting the ONNX graph (torch.onnx, dynamo)"))
    example = stage.tokenizer(["Hello there", "A longer example prompt"], return_tensors="pt", padding=True)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: sequence}
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each phase on stdout
        torch.onnx.export(_LogitsOnly(stage.model).eval(), (example["input_ids"], example["attention_mask"]),
                          str(float_path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_shapes={"input_ids": axes, "attention_mask": axes}, dynamo=True,
                          external_data=False, verbose=False)
    if step.quantization:
        context.progress(ProgressEvent(ProgressKind.STAGE, f"onnxruntime {step.quantization} quantization"))
        _quantize(float_path, folder / FILE, step.quantization, context.calibration)
    stage.tokenizer.save_pretrained(folder)
    stage.model.config.save_pretrained(folder)
    model = OnnxCausalLM(folder / FILE, config=stage.model.config)
    label = f"onnx {step.quantization or 'fp32'}"
    details = {"file": FILE, "quantization": step.quantization or "none", "runtime": "onnxruntime (CPU), no KV cache"}
    return Stage(model, stage.tokenizer, folder, label, stage.parameters, stage.nonzero_parameters, ["cpu", "cuda"],
                 details)


def _quantize(source: Path, target: Path, method: str, calibration: list[torch.Tensor]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static

    if method == "int8_dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(calibration)

        def get_next(self) -> dict[str, Any] | None:
            ids = next(self.rows, None)
            if ids is None:
                return None
            return {"input_ids": ids.numpy(), "attention_mask": torch.ones_like(ids).numpy()}

    quantize_static(str(source), str(target), Reader(), weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)


class OnnxCausalLM(torch.nn.Module):
    """An ONNX causal LM in onnxruntime with transformers' ``generate`` interface (greedy, no KV cache)."""

    def __init__(self, path: Path, *, config: PretrainedConfig) -> None:
        super().__init__()
        import onnxruntime as ort
        from transformers import GenerationConfig

        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # a device for callers to read
        self.config = config
        self.generation_config = GenerationConfig(eos_token_id=config.eos_token_id)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, input_ids: Any = None, attention_mask: Any = None, **_: Any) -> Any:
        """Logits of every position, as a transformers output with ``.logits``."""
        from transformers.modeling_outputs import CausalLMOutput

        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        logits = self.session.run(["logits"], {"input_ids": input_ids.cpu().numpy(),
                                               "attention_mask": mask.cpu().numpy()})[0]
        return CausalLMOutput(logits=torch.from_numpy(logits))

    def generate(self, input_ids: Any, attention_mask: Any = None, *, max_new_tokens: int = 64,
                 min_new_tokens: int = 0, eos_token_id: Any = None, pad_token_id: int | None = None,
                 streamer: Any = None, **_: Any) -> Any:
        """Greedy decoding of a (left-padded) batch; finished rows are padded with ``pad_token_id``."""
        stops = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id or self.config.eos_token_id]
        stops_t = torch.tensor([s for s in stops if s is not None])
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        ids, done = input_ids, torch.zeros(input_ids.shape[0], dtype=torch.bool)
        pad = pad_token_id if pad_token_id is not None else 0
        if streamer is not None:
            streamer.put(input_ids)
        for step in range(max_new_tokens):
            logits = self.forward(ids, mask).logits[:, -1]  # [b, vocab]
            if step < min_new_tokens and len(stops_t):
                logits[:, stops_t] = float("-inf")
            token = torch.where(done, torch.tensor(pad), logits.argmax(-1))  # [b]
            ids, mask = torch.cat([ids, token[:, None]], 1), torch.cat([mask, (~done).long()[:, None]], 1)
            if streamer is not None:
                streamer.put(token)
            done |= torch.isin(token, stops_t)
            if done.all():
                break
        if streamer is not None:
            streamer.end()
        return ids
