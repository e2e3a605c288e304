"""Quantize step: int8 for CPU serving (torch.ao dynamic, torchao weight-only), int4 (torchao, CUDA), and
bitsandbytes NF4 / FP4 / int8 for GPU serving.

torch.ao and torchao models are saved as a state dict (``quantized_model.pt``) next to the model's config and
tokenizer, with ``tuneforge_compressed.json`` saying how to rebuild them (:func:`load_compressed`);
bitsandbytes models are saved by transformers (``save_pretrained``), which reloads them directly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import QuantizeStep
from tuneforge.compression.stage import Stage, StepContext, StepStrategy, step_error
from tuneforge.errors import MissingDependencyError

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

MANIFEST = "tuneforge_compressed.json"
WEIGHTS = "quantized_model.pt"
TORCH_METHODS = {"int8_dynamic": "torch.ao int8 dynamic", "int8_weight_only": "torchao int8 weight-only",
                 "int4_weight_only": "torchao int4 weight-only"}
BNB_METHODS = {"nf4": "bitsandbytes nf4", "fp4": "bitsandbytes fp4", "bnb_int8": "bitsandbytes int8"}


def check(step: QuantizeStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse what cannot run here or cannot fit the model, before any work."""
    import torch

    if step.method in {"int8_weight_only", "int4_weight_only"} and importlib.util.find_spec("torchao") is None:
        raise MissingDependencyError("torchao", extra="compress", purpose=f"quantize method '{step.method}'")
    if step.method == "int4_weight_only" and not torch.cuda.is_available():
        raise step_error("int4_weight_only (torchao's tinygemm kernel) needs a CUDA GPU, and there is none",
                         context_index=index, file=file, field_name="method",
                         hint="on a CPU use int8_dynamic or int8_weight_only, or export: gguf with q4_0")
    if step.method in BNB_METHODS:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingDependencyError("bitsandbytes", extra="qlora", purpose=f"quantize method '{step.method}'")
        widths = {"hidden_size": getattr(config, "hidden_size", 0),
                  "intermediate_size": getattr(config, "intermediate_size", 0)}
        odd = {k: v for k, v in widths.items() if v and v % 32}
        if step.method != "bnb_int8" and odd:
            raise step_error(f"4-bit bitsandbytes packs weights in blocks, and {odd} is not a multiple of 32",
                             context_index=index, file=file, field_name="method",
                             hint="use bnb_int8 or int8_dynamic for this model")


def apply(stage: Stage, step: QuantizeStep, context: StepContext) -> Stage:
    """Quantize the stage's model and save it to ``context.workdir``."""
    if step.method in BNB_METHODS:
        return _bitsandbytes(stage, step, context)
    import torch

    model = _quantized(stage.model, step.method, skip=step.skip_modules, group_size=step.group_size)
    folder = context.workdir
    stage.tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / WEIGHTS)
    manifest = {"format": TORCH_METHODS[step.method], "method": step.method, "skip_modules": step.skip_modules,
                "group_size": step.group_size, "weights": WEIGHTS}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    runs_on = ["cuda"] if step.method == "int4_weight_only" else ["cpu", "cuda"]
    if step.method == "int8_dynamic":
        runs_on = ["cpu"]  # torch.ao's quantized kernels (fbgemm / onednn) are CPU kernels
    return Stage(model, stage.tokenizer, folder, TORCH_METHODS[step.method], stage.parameters,
                 stage.nonzero_parameters, runs_on, {"method": step.method, "skip_modules": step.skip_modules})


def _quantized(model: torch.nn.Module, method: str, *, skip: list[str], group_size: int) -> torch.nn.Module:
    """Quantize the linear layers (and, for int8_dynamic, the input embedding) in place."""
    import torch

    def keep(name: str) -> bool:
        return any(name == s or name.endswith("." + s) for s in skip)

    model.eval()
    if method == "int8_dynamic":
        import warnings

        from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig, quantize_dynamic

        spec: dict[str, Any] = {n: default_dynamic_qconfig for n, m in model.named_modules()
                                if isinstance(m, torch.nn.Linear) and not keep(n)}
        embedding = model.get_input_embeddings()
        name = next(n for n, m in model.named_modules() if m is embedding)
        if not keep(name):
            spec[name] = float_qparams_weight_only_qconfig  # int8 rows with a per-row scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao announces its move to torchao
            return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)
    logging.getLogger("torchao").setLevel(logging.ERROR)
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    if method == "int4_weight_only":
        model.to("cuda", dtype=torch.bfloat16)
        config: Any = Int4WeightOnlyConfig(group_size=group_size)
    else:
        config = Int8WeightOnlyConfig()
    quantize_(model, config, filter_fn=lambda m, n: isinstance(m, torch.nn.Linear) and not keep(n))
    return model


def load_compressed(path: str | Path) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """Load a model that the quantize step saved (torch.ao or torchao), with its tokenizer.

    Raises:
        NotFoundError: The folder holds no ``tuneforge_compressed.json``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tuneforge.errors import NotFoundError
    from tuneforge.models.loading import load_tokenizer

    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise NotFoundError(f"{path} holds no {MANIFEST}", hint="pass the model folder that 'tuneforge compress' "
                            "wrote (a transformers folder loads with from_pretrained instead)")
    manifest = json.loads((path / MANIFEST).read_text())
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32)
    model = _quantized(model, manifest["method"], skip=manifest["skip_modules"], group_size=manifest["group_size"])
    state = torch.load(path / manifest["weights"], weights_only=False)
    model.load_state_dict(state, assign=True)
    return model.eval(), load_tokenizer(path)


def _bitsandbytes(stage: Stage, step: QuantizeStep, context: StepContext) -> Stage:
    import torch
    from transformers import BitsAndBytesConfig

    from tuneforge.models.loading import load_causal_lm

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    if step.method == "bnb_int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=step.skip_modules or None)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=step.method,
                                    bnb_4bit_compute_dtype=torch.float32,
                                    llm_int8_skip_modules=step.skip_modules or None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(stage.files, quantization_config=config, device_map={"": device})
    model.save_pretrained(context.workdir)
    stage.tokenizer.save_pretrained(context.workdir)
    return Stage(model.eval(), stage.tokenizer, context.workdir, BNB_METHODS[step.method], stage.parameters,
                 stage.nonzero_parameters, ["cuda", "cpu"], {"method": step.method, "device": device})


QUANTIZE: StepStrategy[QuantizeStep] = StepStrategy(check, apply)
