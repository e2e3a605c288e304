"""``train.report_to``: the Trainer's own TensorBoard and MLflow integrations, pointed at the run folder."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from tuneforge.errors import MissingDependencyError

if TYPE_CHECKING:
    from tuneforge.config.models import TrainConfig
    from tuneforge.storage.rundir import RunDir

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # report_to entry -> the package it needs


def tensorboard_dir(run: RunDir) -> Any:
    """Where a run's TensorBoard event files go: ``RUN/tensorboard``."""
    return run.root / "tensorboard"


def mlflow_uri(config: TrainConfig, run: RunDir) -> str:
    """``train.mlflow_tracking_uri``, else a local store in ``RUN/mlruns``: ``sqlite:///RUN/mlruns/mlflow.db``.

    MLflow 3 refuses its old ``./mlruns`` file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; its own default
    is now a SQLite file, so the local store is one, kept in the run folder.
    """
    if config.train.mlflow_tracking_uri:
        return config.train.mlflow_tracking_uri
    folder = (run.root / "mlruns").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def prepare_trackers(config: TrainConfig, run: RunDir) -> None:
    """Check that the trackers of ``report_to`` are installed and point MLflow at its tracking URI.

    Raises:
        MissingDependencyError: A tracker's package is missing (the ``monitoring`` extra installs both).
    """
    for target in config.train.report_to:
        if importlib.util.find_spec(PACKAGES[target]) is None:
            raise MissingDependencyError(PACKAGES[target], extra="monitoring", purpose=f"train.report_to: {target}")
    if "mlflow" in config.train.report_to:
        import mlflow

        # The Trainer's MLflowCallback logs to the current tracking URI (it reads no setting of ours).
        mlflow.set_tracking_uri(mlflow_uri(config, run))


def point_trackers(trainer: Any, run: RunDir) -> None:
    """Send the Trainer's TensorBoard callback to ``RUN/tensorboard`` (it defaults under the checkpoints)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(tensorboard_dir(run))
