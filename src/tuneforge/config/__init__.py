"""Validated configs and their loader."""

from tuneforge.config.loader import load_config, validate_config
from tuneforge.config.models import (
    DataConfig,
    DoraMethod,
    FreezeMethod,
    FullMethod,
    LoraMethod,
    QloraMethod,
    TrainConfig,
    TrainSettings,
)

__all__ = [
    "DataConfig",
    "DoraMethod",
    "FreezeMethod",
    "FullMethod",
    "LoraMethod",
    "QloraMethod",
    "TrainConfig",
    "TrainSettings",
    "load_config",
    "validate_config",
]
