"""The training config: what `hpo train` runs, what a trial records, what GET /best returns
(torch-free). ``objectives.train.train`` takes one; the service builds one per trial from a
study spec.

Unknown fields are rejected everywhere; each error names its field. Paths are checked for
their form here (relative, no ``..``); that they stay inside HPO_DATA_DIR (symlinks) and that
what they name exists is checked by the service when a study is created
(service.spec.references), and again where they are read (objectives.paths.resolve_under).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from objectives.init import InitSpec, ScratchInit, check_init
from objectives.paths import DataPathError, check_relative
from objectives.registry import Param, check_value, get_objective
from objectives.strict import StrictModel

DEFAULT_VAL_FRACTION = 0.1  # of the training images, when a config names no validation
# What a training run reports: objectives.train.TrainResult's fields, in order, named here without
# torch for the service's export and the CLI (tests/service/test_export.py holds them equal).
HOLDOUT_RESULT = (
    "val_accuracy",
    "test_accuracy",
    "loss",
    "epochs",
    "seconds",
    "images_per_second",
    "device",
    "threads",
)
KFOLD_RESULT = ("fold_val_accuracies", "fold_test_accuracies", "val_accuracy_std")  # a k-fold run's alone
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _registered_objective(name: str) -> str:
    """Raise ValueError (which pydantic reports as a 422) for an unregistered objective."""
    try:
        get_objective(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    return name


ObjectiveName = Annotated[str, AfterValidator(_registered_objective)]


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


def check_classes(wanted: list[str], present: list[str]) -> None:
    """Raise ValueError naming ``dataset.classes`` unless ``wanted`` are distinct names among ``present``."""
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"dataset.classes: names a class twice ({wanted})")
    missing = [name for name in wanted if name not in present]
    if missing:
        raise ValueError(f"dataset.classes: no class folder {', '.join(map(repr, missing))} (there are: {present})")


class Holdout(StrictModel):
    """``{"kind": "holdout", "fraction": F}``: a stratified ``fraction`` of the training images validates."""

    kind: Literal["holdout"]
    fraction: float = Field(default=DEFAULT_VAL_FRACTION, gt=0.0, lt=1.0)


class KFold(StrictModel):
    """``{"kind": "kfold", "folds": K}``: stratified K-fold cross-validation; a run trains K models.

    ``seed`` deals the images to the folds (a study fills in its own seed, so that all its
    trials, and `hpo train` of any of their configs, use the same folds)."""

    kind: Literal["kfold"]
    folds: int = Field(ge=2, le=10)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class NoValidation(StrictModel):
    """``{"kind": "none"}``: every training image trains (`hpo train --refit`); a study cannot select without one."""

    kind: Literal["none"]


Validation = Annotated[Holdout | KFold | NoValidation, Field(discriminator="kind")]


def capped_counts(counts: list[int], limit: int | None, per_class: int | None) -> list[int]:
    """How many images of each class the caps keep (objectives.splits keeps them so), from the class sizes."""
    capped = [min(n, per_class) if per_class is not None else n for n in counts]
    total = sum(capped)
    return [n if limit is None else round(limit * n / total) for n in capped]


class _Dataset(StrictModel):
    kind: str  # narrowed to a Literal by each subclass; declared here so that it comes first in a dump
    limit: int | None = Field(default=None, ge=10, le=10_000_000)  # cap on training images (stratified)
    per_class: int | None = Field(default=None, ge=1, le=10_000_000)  # cap on each class's training images
    classes: list[str] | None = Field(default=None, min_length=2, max_length=1000)  # these class folders, in order
    val_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)  # shorthand for a holdout validation
    validation: Validation | None = None  # how training images are split; neither: a holdout of 0.1

    @model_validator(mode="after")
    def _consistent(self) -> _Dataset:
        if self.classes:  # an image folder's class folders are checked when a study is created
            check_classes(self.classes, CIFAR10_CLASSES if self.kind == "cifar10" else self.classes)
        shorthand = Holdout(kind="holdout", fraction=self.val_fraction or DEFAULT_VAL_FRACTION)
        if self.val_fraction is not None and self.validation not in (None, shorthand):
            raise ValueError("dataset.val_fraction contradicts dataset.validation: give one of them")
        return self

    def split(self) -> Holdout | KFold | NoValidation:
        """How the training images are split: ``validation``, else a holdout of ``val_fraction`` (default 0.1)."""
        return self.validation or Holdout(kind="holdout", fraction=self.val_fraction or DEFAULT_VAL_FRACTION)


class ImageFolderDataset(_Dataset):
    """``{"kind": "imagefolder", "path": P}``: ``train/`` and ``test/`` of class folders under HPO_DATA_DIR/P."""

    kind: Literal["imagefolder"]
    path: str  # relative to HPO_DATA_DIR; nothing outside it can be named

    @model_validator(mode="after")
    def _relative(self) -> ImageFolderDataset:
        try:
            check_relative(self.path)
        except DataPathError as exc:
            raise ValueError(str(exc)) from None
        return self


class Cifar10Dataset(_Dataset):
    """``{"kind": "cifar10"}``: torchvision's CIFAR-10 files under HPO_DATA_DIR/cifar10."""

    kind: Literal["cifar10"]
    path: None = Field(default=None, exclude=True)  # specs stored before 2026-11-29 carry "path": null


DatasetSpec = Annotated[ImageFolderDataset | Cifar10Dataset, Field(discriminator="kind")]


class TrainingConfig(StrictModel):
    """One complete training run: what `hpo train --config` reads and GET /best returns."""

    objective: ObjectiveName = "cnn"
    dataset: DatasetSpec
    epochs: int = Field(default=10, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    params: dict[str, Any] = Field(default_factory=dict)
    init: InitSpec = Field(default_factory=lambda: ScratchInit(kind="scratch"))
    # Where the trial trained (the worker records it): `hpo train`'s default device. None: CUDA when present.
    device: Literal["cpu", "cuda"] | None = None

    @model_validator(mode="after")
    def _params_known(self) -> TrainingConfig:
        check_parameters("params", self.objective, self.params, check_value)
        check_init(self.init, self.objective)
        return self

    def refit(self) -> TrainingConfig:
        """This config on every training image: no validation split (`hpo train --refit`)."""
        everything = self.dataset.model_copy(update={"validation": NoValidation(kind="none"), "val_fraction": None})
        return self.model_copy(update={"dataset": everything})

    def hyperparameters(self) -> dict[str, Any]:
        """Every parameter of the objective: ``params`` over the registry's defaults."""
        return {**get_objective(self.objective).default_params(), **self.params}
