"""Training objectives: data, augmentation, models and the train loop.

Training code (``objectives.train`` and the modules it uses) needs torch, torchvision,
numpy and Pillow, and never optuna, sqlalchemy, service/ or worker/. Importing
``objectives`` itself (the parameter registry and the path guard) loads none of them, so
the service can validate specs without pulling in training code.
"""

from objectives.paths import DataPathError, resolve_under
from objectives.registry import OBJECTIVES, Objective, Param, get_objective

__all__ = ["OBJECTIVES", "DataPathError", "Objective", "Param", "get_objective", "resolve_under"]
