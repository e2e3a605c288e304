"""Pick the device and mixed precision for training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Precision:
    """Resolved precision: the name and the Trainer flags it implies."""

    name: str  # bf16 | fp16 | fp32
    device: str  # cuda | cpu

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def fp16(self) -> bool:
        return self.name == "fp16"

    @property
    def compute_dtype(self) -> torch.dtype:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.name]


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), so autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str) -> Precision:
    """Turn ``auto`` / ``bf16`` / ``fp16`` / ``fp32`` into what this machine runs."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "auto":
        if device == "cuda":
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            requested = "bf16" if cpu_supports_bf16() else "fp32"
    if requested == "fp16" and device == "cpu":
        raise ConfigError(
            "fp16 mixed precision needs a CUDA GPU, and none is available",
            field="train.precision",
            hint="use precision: auto (bf16 where the CPU supports it) or fp32",
        )
    return Precision(requested, device)
