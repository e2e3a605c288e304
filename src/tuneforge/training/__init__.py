"""Training: run_training() and the method strategies."""

from tuneforge.training.run import TrainResult, run_training

__all__ = ["TrainResult", "run_training"]
