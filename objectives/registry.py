"""The registry of objectives and their tunable parameters (torch-free).

Each parameter has a default value (used when a spec or config leaves it out) and a default
search range (used when a spec lists no search space). The service validates specs against
this registry; the worker maps Optuna suggestions onto it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

ParamType = Literal["float", "int", "categorical"]


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its type, default value and default search range."""

    name: str
    type: ParamType
    default: Any
    doc: str
    low: float | None = None  # hard lower bound of any range (inclusive)
    high: float | None = None  # hard upper bound of any range (inclusive)
    choices: tuple[Any, ...] | None = None  # the only legal values, for closed sets
    default_space: dict[str, Any] | None = None  # the range searched when a spec names none
    positive: bool = False  # low is exclusive: the value must be > low


@dataclass(frozen=True)
class Objective:
    """A trainable objective: a name, its parameters, how many leading blocks ``freeze`` can
    freeze (all of them: only the classifier head trains), the torchvision weights it can
    start from (name -> file name in torch's hub cache), the state_dict prefix of its
    classifier head (never taken from starting weights: it belongs to their task) and the
    parameters that change its weights' shapes (starting weights fix them)."""

    name: str
    doc: str
    head: str
    params: dict[str, Param] = field(default_factory=dict)
    blocks: int = 0
    torchvision_weights: dict[str, str] = field(default_factory=dict)
    shape_params: tuple[str, ...] = ()

    def default_params(self) -> dict[str, Any]:
        """Every parameter at its default value."""
        return {name: p.default for name, p in self.params.items()}

    def default_search_space(self) -> dict[str, dict[str, Any]]:
        """The parameters searched, with their ranges, when a spec names none."""
        return {name: dict(p.default_space) for name, p in self.params.items() if p.default_space}


def _transfer_params(blocks: int) -> list[Param]:
    """``freeze`` and ``backbone_lr_scale``, the parameters of fine-tuning, for a model of ``blocks`` blocks."""
    return [
        Param(
            "freeze",
            "int",
            0,
            f"leading blocks kept frozen (weights and BatchNorm statistics): 0 = train all, {blocks} = the head only",
            low=0,
            high=blocks,
        ),
        Param(
            "backbone_lr_scale",
            "float",
            1.0,
            "learning rate of every layer but the classifier head, as a fraction of lr",
            low=0.0,
            high=1.0,
            positive=True,
        ),
    ]


_TRAINING_PARAMS = [
    Param(
        "lr",
        "float",
        0.002,
        "peak learning rate of the one-cycle schedule",
        low=0.0,
        high=10.0,
        positive=True,
        default_space={"type": "float", "low": 1e-3, "high": 2e-2, "log": True},
    ),
    Param(
        "batch_size",
        "int",
        128,
        "images per optimisation step",
        low=1,
        high=4096,
        default_space={"type": "categorical", "choices": [64, 128, 256]},
    ),
    Param(
        "aug_strength",
        "float",
        0.4,
        "augmentation knob, 0 = none, 1 = strongest (see objectives/augment.py)",
        low=0.0,
        high=1.0,
        default_space={"type": "float", "low": 0.0, "high": 1.0},
    ),
    Param("optimizer", "categorical", "adam", "adam or sgd (Nesterov)", choices=("adam", "sgd")),
    Param("momentum", "float", 0.9, "SGD momentum, or Adam's beta1", low=0.0, high=0.999),
    Param("weight_decay", "float", 5e-4, "L2 penalty (decoupled for adam: AdamW)", low=0.0, high=1.0),
    Param("label_smoothing", "float", 0.0, "cross-entropy label smoothing", low=0.0, high=0.5),
    Param(
        "eval_flip",
        "categorical",
        True,
        "evaluate (validation and test) on each image and its mirror image, averaging the predictions",
        choices=(True, False),
    ),
    Param(
        "eval_shift",
        "categorical",
        True,
        "the final evaluation also averages over each image moved a pixel both ways diagonally (not each epoch's)",
        choices=(True, False),
    ),
]


def _image_size(default: int, low: int, high: int, doc: str) -> Param:
    """``image_size``: the side, in pixels, the model resizes its inputs to (bilinear, on the training device)."""
    return Param("image_size", "int", default, doc, low=low, high=high)


_CNN_PARAMS = [
    *_TRAINING_PARAMS,
    Param("width", "float", 0.25, "channel multiplier of the 64/128/256/512 CNN", low=0.03, high=4.0),
    _image_size(32, 32, 32, "input side in pixels: the CNN takes CIFAR-10's 32 x 32 (other sizes are resized to it)"),
    *_transfer_params(blocks=4),
]
_RESNET18_PARAMS = [
    *_TRAINING_PARAMS,
    _image_size(32, 32, 320, "input side in pixels the images are resized to (ImageNet's weights saw 224)"),
    Param(
        "small_stem",
        "categorical",
        True,
        "a 3x3 stride-1 first convolution and no max-pooling, for 32x32 images (false: ImageNet's 7x7 stem)",
        choices=(True, False),
    ),
    *_transfer_params(blocks=5),
]

_EFFICIENTNET_PARAMS = [
    *_TRAINING_PARAMS,
    _image_size(
        128, 32, 320, "input side in pixels the images are resized to (ImageNet's weights saw 224; 128 costs a third)"
    ),
    *_transfer_params(blocks=9),
]

# Adding an objective: its parameters here, its model in objectives/model.py (ARCHITECTURES) and
# its weights' shapes in objectives/shapes.py (BACKBONE_SHAPES).
OBJECTIVES: dict[str, Objective] = {
    "cnn": Objective(
        name="cnn",
        doc="The seed article's 4-block CNN (conv3x3-BN-ReLU-maxpool x4, global pooling, linear).",
        head="18.",
        params={p.name: p for p in _CNN_PARAMS},
        blocks=4,
        shape_params=("width",),
    ),
    "resnet18": Objective(
        name="resnet18",
        doc="torchvision's ResNet-18 (stem, 4 stages of 2 basic blocks, global pooling, linear).",
        head="fc.",
        params={p.name: p for p in _RESNET18_PARAMS},
        blocks=5,  # the stem and the four stages
        torchvision_weights={"ResNet18_Weights.IMAGENET1K_V1": "resnet18-f37072fd.pth"},
        shape_params=("small_stem",),
    ),
    "efficientnet_lite0": Objective(
        name="efficientnet_lite0",
        doc="EfficientNet-Lite0 (stem, 7 stages of inverted-residual blocks, 1x1 head convolution, pooling, linear).",
        head="_fc.",
        params={p.name: p for p in _EFFICIENTNET_PARAMS},
        blocks=9,  # the stem, the seven stages and the head convolution: at 9 only the classifier trains
    ),
}


def check_value(param: Param, value: Any) -> None:
    """Raise ValueError naming the problem if ``value`` is not a legal value of ``param``."""
    if param.type == "categorical":
        if param.choices is not None and not any(value == c and type(value) is type(c) for c in param.choices):
            raise ValueError(f"{param.name} must be one of {list(param.choices)}, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{param.name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{param.name} must be a finite number, got {value!r}")
    if param.type == "int" and value != int(value):
        raise ValueError(f"{param.name} must be an integer, got {value!r}")
    too_low = param.low is not None and (value <= param.low if param.positive else value < param.low)
    if too_low or (param.high is not None and value > param.high):
        opening = "(" if param.positive else "["
        raise ValueError(f"{param.name} must lie in {opening}{param.low}, {param.high}], got {value!r}")


def get_objective(name: str) -> Objective:
    """Return the registered objective called ``name`` or raise KeyError naming the known ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}") from None
