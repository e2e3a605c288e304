"""Validated configs and their loader.

The config classes of the registered methods and tasks (``LoraMethod``, ``DpoTask``, ...) are exported from
their registries (:mod:`tuneforge.config.registry`), so this list follows every registration.
"""

from tuneforge.config.examples import method_template
from tuneforge.config.loader import load_config, validate_config
from tuneforge.config.methods import METHODS, MethodConfig, method_names
from tuneforge.config.models import DataConfig, TrainConfig, TrainSettings
from tuneforge.config.tasks import TASKS, TrainTaskConfig, task_names

_REGISTERED = {config.__name__: config for config in (*METHODS.configs(), *TASKS.configs())}
globals().update(_REGISTERED)

__all__ = [
    "METHODS",
    "TASKS",
    "DataConfig",
    "MethodConfig",
    "TrainConfig",
    "TrainSettings",
    "TrainTaskConfig",
    "load_config",
    "method_names",
    "method_template",
    "task_names",
    "validate_config",
    *sorted(_REGISTERED),
]
