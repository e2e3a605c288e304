"""tuneforge: turn an open model and your data into a better, smaller, served model.

``import tuneforge`` stays light; heavy packages load when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tuneforge.settings import Settings
    from tuneforge.training.run import TrainResult


def train(
    config: Any, *, resume: bool = False, overwrite: bool = False, progress: Any = None,
    settings: Settings | None = None, overrides: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune as ``config`` says (a TrainConfig, a mapping, or a YAML path); see the CLI's ``train``.

    ``settings`` default to :meth:`Settings.from_env` (``TUNEFORGE_HOME`` and friends), read once here;
    ``overrides`` are ``KEY=VALUE`` strings as the CLI's ``--set`` takes them.
    """
    from tuneforge.progress import no_progress
    from tuneforge.services.training import train as train_service
    from tuneforge.settings import Settings

    return train_service(config, settings=settings or Settings.from_env(), resume=resume, overwrite=overwrite,
                         progress=progress or no_progress, overrides=overrides)


__all__ = ["__version__", "train"]
