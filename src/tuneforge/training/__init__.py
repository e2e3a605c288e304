"""Training: run_training() and the method strategies.

``run_training`` loads lazily, so that light submodules (``training.precision``) import without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainResult", "run_training"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tuneforge.training import run

        return getattr(run, name)
    raise AttributeError(f"module 'tuneforge.training' has no attribute {name!r}")
