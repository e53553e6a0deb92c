"""Training a network: update rules, the order of the examples, schedules, the loop, and its checkpoints.

* :mod:`~minisgd.training.optim`: SGD, momentum, Nesterov, Adam as pure update rules with explicit state; the
  proximal step.
* :mod:`~minisgd.training.sampling`: which examples each step sees (shuffled epochs, with replacement, full batch).
* :mod:`~minisgd.training.schedules`: learning-rate and batch-size schedules.
* :mod:`~minisgd.training.injection`: gradient noise matched to a smaller batch's.
* :mod:`~minisgd.training.callbacks`: measurements taken every k steps.
* :mod:`~minisgd.training.checkpoint`: atomic NPZ + JSON checkpoints.
* :mod:`~minisgd.training.train`: :func:`train`, the loop that puts them together.
"""
from .train import TrainConfig, TrainResult, load_run, planned_steps, train

__all__ = ["TrainConfig", "TrainResult", "train", "load_run", "planned_steps"]
