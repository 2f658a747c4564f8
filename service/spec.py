"""The study spec (what POST /studies takes) and the training config (what `hpo train` runs).

Unknown fields are rejected everywhere; each error names its field. Dataset paths are
checked against HPO_DATA_DIR so that no request can make a worker read outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, model_validator

from objectives import DataPathError, Param, get_objective, resolve_under
from service.settings import get_settings
from service.space import Categorical, SpaceEntry, StrictModel, check_entry, check_value, contains

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # and not dots alone: see _not_dots_alone
_ENTRY: TypeAdapter[SpaceEntry] = TypeAdapter(SpaceEntry)


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
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)  # carved from train; drives the search


class ImageFolderDataset(_Dataset):
    """``{"kind": "imagefolder", "path": P}``: ``train/`` and ``test/`` of class folders under HPO_DATA_DIR/P."""

    kind: Literal["imagefolder"]
    path: str  # relative to HPO_DATA_DIR; nothing outside it can be named

    @model_validator(mode="after")
    def _path_inside_data_dir(self) -> ImageFolderDataset:
        try:
            resolve_under(get_settings().data_dir, self.path)
        except DataPathError as exc:
            raise ValueError(str(exc)) from None
        return self


class Cifar10Dataset(_Dataset):
    """``{"kind": "cifar10"}``: torchvision's CIFAR-10 files under HPO_DATA_DIR/cifar10."""

    kind: Literal["cifar10"]
    path: None = Field(default=None, exclude=True)  # specs stored before 2026-11-29 carry "path": null


DatasetSpec = Annotated[ImageFolderDataset | Cifar10Dataset, Field(discriminator="kind")]


class TPE(StrictModel):
    name: Literal["tpe"]
    seed: int | None = None
    # random trials before TPE models the space; 5, not Optuna's 10: studies here run tens of trials
    n_startup_trials: int = Field(default=5, ge=0, le=10_000)
    multivariate: bool = True


class RandomSampler(StrictModel):
    name: Literal["random"]
    seed: int | None = None


class GridSampler(StrictModel):
    name: Literal["grid"]
    seed: int | None = None


class CmaEs(StrictModel):
    name: Literal["cmaes"]
    seed: int | None = None
    n_startup_trials: int = Field(default=1, ge=0, le=10_000)
    sigma0: float | None = Field(default=None, gt=0)


class QMC(StrictModel):
    name: Literal["qmc"]
    seed: int | None = None
    qmc_type: Literal["sobol", "halton"] = "sobol"


SamplerSpec = Annotated[TPE | RandomSampler | GridSampler | CmaEs | QMC, Field(discriminator="name")]


class Hyperband(StrictModel):
    name: Literal["hyperband"]
    min_resource: int = Field(default=1, ge=1)
    max_resource: int | None = Field(default=None, ge=1)  # default: the spec's epochs
    reduction_factor: int = Field(default=3, ge=2, le=10)


class SuccessiveHalving(StrictModel):
    name: Literal["successive_halving"]
    min_resource: int = Field(default=1, ge=1)
    reduction_factor: int = Field(default=3, ge=2, le=10)


class Median(StrictModel):
    name: Literal["median"]
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    interval_steps: int = Field(default=1, ge=1)


class NoPruner(StrictModel):
    name: Literal["none"]


PrunerSpec = Annotated[Hyperband | SuccessiveHalving | Median | NoPruner, Field(discriminator="name")]


class TrainingConfig(StrictModel):
    """One complete training run: what `hpo train --config` reads and GET /best returns."""

    objective: ObjectiveName = "cnn"
    dataset: DatasetSpec
    epochs: int = Field(default=10, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _params_known(self) -> TrainingConfig:
        check_parameters("params", self.objective, self.params, check_value)
        return self


class StudySpec(StrictModel):
    """A search: which objective on which data, over which space, with which budget."""

    name: StudyName
    objective: ObjectiveName = "cnn"
    dataset: DatasetSpec
    search_space: dict[str, SpaceEntry] = Field(default_factory=dict)  # merged over the objective's defaults
    epochs: int = Field(default=10, ge=1, le=1000)
    max_trials: int = Field(default=50, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)  # training seed of every trial
    priority: int = Field(default=0, ge=-1000, le=1000)  # workers serve higher priority first
    max_failed_trials: int = Field(default=5, ge=1, le=100_000)  # consecutive failures that pause the study
    sampler: SamplerSpec = Field(default_factory=lambda: TPE(name="tpe"))
    pruner: PrunerSpec = Field(default_factory=lambda: Hyperband(name="hyperband"))
    enqueue: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)  # warm-start configs

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        check_parameters("search_space", self.objective, self.search_space, check_entry)
        objective = get_objective(self.objective)
        defaults = {k: _ENTRY.validate_python(v) for k, v in objective.default_search_space().items()}
        self.search_space = {**defaults, **self.search_space}
        if self.sampler.name == "grid":
            bad = [k for k, e in self.searched().items() if not isinstance(e, Categorical)]
            if bad:
                raise ValueError(f"sampler grid needs categorical entries; not categorical: {', '.join(bad)}")
        if self.enqueue and len(self.enqueue) > self.max_trials:
            raise ValueError(f"enqueue holds {len(self.enqueue)} configs but max_trials is {self.max_trials}")
        for i, config in enumerate(self.enqueue):
            self._check_enqueued(i, config)
        return self

    def _check_enqueued(self, index: int, config: dict[str, Any]) -> None:
        searched = self.searched()
        for key, value in config.items():
            require_known(f"enqueue[{index}]", key, searched, "a searched parameter")
            if not contains(searched[key], value):
                raise ValueError(f"enqueue[{index}].{key}: {value!r} lies outside the search space")

    def searched(self) -> dict[str, Any]:
        """The entries that are searched (not fixed to a bare value)."""
        return {k: e for k, e in self.search_space.items() if isinstance(e, BaseModel)}

    def fixed(self) -> dict[str, Any]:
        """The parameters fixed to a bare value."""
        return {k: e for k, e in self.search_space.items() if not isinstance(e, BaseModel)}

    def training_config(self, params: dict[str, Any]) -> TrainingConfig:
        """The complete training config of one trial's parameters."""
        return TrainingConfig(
            objective=self.objective,
            dataset=self.dataset,
            epochs=self.epochs,
            seed=self.seed,
            params={**self.fixed(), **params},
        )
