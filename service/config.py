"""The training config (what `hpo train` runs and GET /best returns) and its parts: the dataset,
where the starting weights come from (``init``), the objective's parameters.

Unknown fields are rejected everywhere; each error names its field. Paths are checked against
HPO_DATA_DIR (datasets, weight files) so that no request can make a worker read outside it.
Whether named files and studies exist is checked when a study is created (service.init_check),
not here: a stored spec must stay readable after a file it names has gone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from objectives import DataPathError, Param, get_objective, resolve_under
from service.settings import get_settings
from service.space import StrictModel, check_value

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # and not dots alone: see _not_dots_alone


def _registered_objective(name: str) -> str:
    """Raise ValueError (which pydantic reports as a 422) for an unregistered objective."""
    try:
        get_objective(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    return name


ObjectiveName = Annotated[str, AfterValidator(_registered_objective)]


def _not_dots_alone(name: str) -> str:
    """Refuse ``.``, ``..`` and the like: names appear in paths and URLs, where those mean something else."""
    if not name.strip("."):
        raise ValueError("a study name needs a letter, digit, '_' or '-' besides dots")
    return name


StudyName = Annotated[str, Field(pattern=NAME_PATTERN), AfterValidator(_not_dots_alone)]


def inside(root: Path, relative: str, what: str, within: str) -> Path:
    """``root/relative``; ValueError (a 422) naming ``what`` if it is malformed or leads outside ``root``."""
    try:
        return resolve_under(root, relative, what=what, within=within)
    except DataPathError as exc:
        raise ValueError(str(exc)) from None


def require_known(field: str, key: str, known: Collection[str], kind: str) -> None:
    """Raise ValueError naming ``field.key`` when ``key`` is not one of ``known`` (listed in the message)."""
    if key not in known:
        raise ValueError(f"{field}.{key}: not {kind} ({', '.join(known)})")


def check_parameters(
    field: str, objective_name: str, values: Mapping[str, Any], check: Callable[[Param, Any], None]
) -> None:
    """Raise ValueError naming ``field.key`` for a key the objective lacks or a value ``check`` refuses."""
    objective = get_objective(objective_name)
    for key, value in values.items():
        require_known(field, key, objective.params, f"a parameter of {objective_name!r}")
        try:
            check(objective.params[key], value)
        except ValueError as exc:
            raise ValueError(f"{field}.{key}: {exc}") from None


class _Dataset(StrictModel):
    kind: str  # narrowed to a Literal by each subclass; declared here so that it comes first in a dump
    limit: int | None = Field(default=None, ge=10, le=10_000_000)  # cap on training images (stratified)
    per_class: int | None = Field(default=None, ge=1, le=10_000_000)  # cap on each class's training images
    classes: list[str] | None = Field(default=None, min_length=2, max_length=1000)  # these class folders, in order
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)  # carved from train; drives the search


class ImageFolderDataset(_Dataset):
    """``{"kind": "imagefolder", "path": P}``: ``train/`` and ``test/`` of class folders under HPO_DATA_DIR/P."""

    kind: Literal["imagefolder"]
    path: str  # relative to HPO_DATA_DIR; nothing outside it can be named

    @model_validator(mode="after")
    def _path_inside_data_dir(self) -> ImageFolderDataset:
        root = inside(get_settings().data_dir, self.path, "dataset path", "the data directory")
        if self.classes and (root / "train").is_dir():
            present = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
            _check_classes(self.classes, present)
        return self


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _check_classes(wanted: list[str], present: list[str]) -> None:
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"dataset.classes: names a class twice ({wanted})")
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ValueError(f"dataset.classes: no class folder {', '.join(map(repr, missing))} (there are: {present})")


class Cifar10Dataset(_Dataset):
    """``{"kind": "cifar10"}``: torchvision's CIFAR-10 files under HPO_DATA_DIR/cifar10."""

    kind: Literal["cifar10"]
    path: None = Field(default=None, exclude=True)  # specs stored before 2026-11-29 carry "path": null

    @model_validator(mode="after")
    def _known_classes(self) -> Cifar10Dataset:
        if self.classes:
            _check_classes(self.classes, CIFAR10_CLASSES)
        return self


DatasetSpec = Annotated[ImageFolderDataset | Cifar10Dataset, Field(discriminator="kind")]


INIT_KINDS = ("scratch", "file", "study", "torchvision")


class ScratchInit(StrictModel):
    """``{"kind": "scratch"}``: random initial weights (the default)."""

    kind: Literal["scratch"]


class FileInit(StrictModel):
    """``{"kind": "file", "path": P}``: a state_dict file under HPO_DATA_DIR."""

    kind: Literal["file"]
    path: str

    @model_validator(mode="after")
    def _path_inside_data_dir(self) -> FileInit:
        inside(get_settings().data_dir, self.path, "init.path", "HPO_DATA_DIR")
        return self


class StudyInit(StrictModel):
    """``{"kind": "study", "study": NAME}``: the final weights of an earlier study's best trial.

    ``trial`` and ``weights`` (the file, relative to HPO_ARTIFACT_DIR) are filled in when the
    study is created, so that every trial, and `hpo train` later, starts from the same weights.
    """

    kind: Literal["study"]
    study: StudyName
    trial: int | None = Field(default=None, ge=0)
    weights: str | None = None

    @model_validator(mode="after")
    def _weights_inside_artifact_dir(self) -> StudyInit:
        if self.weights is not None:
            inside(get_settings().artifact_dir, self.weights, "init.weights", "HPO_ARTIFACT_DIR")
        return self


class TorchvisionInit(StrictModel):
    """``{"kind": "torchvision", "weights": "ResNet18_Weights.IMAGENET1K_V1"}``: torchvision's
    published weights, from torch's hub cache (downloaded only when HPO_ALLOW_DOWNLOAD is true)."""

    kind: Literal["torchvision"]
    weights: str


InitSpec = Annotated[ScratchInit | FileInit | StudyInit | TorchvisionInit, Field(discriminator="kind")]


def check_init(init: ScratchInit | FileInit | StudyInit | TorchvisionInit, objective_name: str) -> None:
    """Raise ValueError naming the field when ``init`` cannot serve ``objective_name``."""
    if isinstance(init, TorchvisionInit):
        known = get_objective(objective_name).torchvision_weights
        if init.weights not in known:
            raise ValueError(
                f"init.weights: {init.weights!r} is not torchvision weights for {objective_name!r}"
                f" (known: {', '.join(known) or 'none'})"
            )


class TrainingConfig(StrictModel):
    """One complete training run: what `hpo train --config` reads and GET /best returns."""

    objective: ObjectiveName = "cnn"
    dataset: DatasetSpec
    epochs: int = Field(default=10, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    params: dict[str, Any] = Field(default_factory=dict)
    init: InitSpec = Field(default_factory=lambda: ScratchInit(kind="scratch"))

    @model_validator(mode="after")
    def _params_known(self) -> TrainingConfig:
        check_parameters("params", self.objective, self.params, check_value)
        check_init(self.init, self.objective)
        return self
