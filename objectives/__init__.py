"""Training objectives: data, augmentation, models and the train loop.

This package imports only torch and torchvision, and only in its submodules: importing
``objectives`` itself (the parameter registry and the path guard) loads no torch, so the
service can validate specs without pulling in training code. Training code lives in
``objectives.train`` and friends.
"""

from objectives.paths import DataPathError, resolve_under
from objectives.registry import OBJECTIVES, Objective, Param, get_objective

__all__ = ["OBJECTIVES", "DataPathError", "Objective", "Param", "get_objective", "resolve_under"]
