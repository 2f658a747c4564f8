"""The study spec: what POST /studies takes (the training config it builds is objectives/config.py's).

Unknown fields are rejected everywhere; each error names its field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from objectives import get_objective
from objectives.config import (
    DatasetSpec,
    KFold,
    NoValidation,
    ObjectiveName,
    TrainingConfig,
    check_parameters,
    require_known,
)
from objectives.init import InitSpec, ScratchInit, check_init
from objectives.strict import StrictModel, StudyName
from service.spec.notify import NotifyTarget
from service.spec.space import Categorical, SpaceEntry, check_entry, contains
from service.spec.stopping import StopWhen

_ENTRY: TypeAdapter[SpaceEntry] = TypeAdapter(SpaceEntry)


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


class EnqueueFrom(StrictModel):
    """``{"study": NAME, "top": K}``: enqueue the K best configs of an earlier study (restricted to
    this study's space; each takes a budget slot, like ``enqueue``)."""

    study: StudyName
    top: int = Field(default=5, ge=1, le=1000)


EXAMPLE_SPEC: dict[str, Any] = {
    "name": "cifar-search",
    "dataset": {"kind": "imagefolder", "path": "cifar10-sample", "limit": 3000, "val_fraction": 0.1},
    "search_space": {
        "lr": {"type": "float", "low": 0.0003, "high": 0.03, "log": True},
        "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
        "aug_strength": {"type": "float", "low": 0.0, "high": 1.0},
        "width": 0.25,
    },
    "epochs": 5,
    "max_trials": 10,
}


class StudySpec(StrictModel):
    """A search: which objective on which data, over which space, with which budget."""

    model_config = ConfigDict(  # the OpenAPI schema's example: a valid spec (clients and the fuzzer start from it)
        **StrictModel.model_config,
        json_schema_extra={"examples": [EXAMPLE_SPEC]},
    )

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
    enqueue_from: EnqueueFrom | None = None  # warm start from an earlier study's best configs
    init: InitSpec = Field(default_factory=lambda: ScratchInit(kind="scratch"))  # starting weights of every trial
    stop_when: StopWhen | None = None  # rules that complete the study before its budget is spent (spec/stopping.py)
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=10)  # receivers of its events (spec/notify.py)

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        check_parameters("search_space", self.objective, self.search_space, check_entry)
        check_init(self.init, self.objective)
        validation = self.dataset.validation
        if isinstance(validation, NoValidation):
            raise ValueError("dataset.validation: a study selects on validation; 'none' is for `hpo train --refit`")
        if isinstance(validation, KFold) and validation.seed is None:
            validation.seed = self.seed  # every trial of the study, and its configs, use the same folds
        objective = get_objective(self.objective)
        defaults = {k: _ENTRY.validate_python(v) for k, v in objective.default_search_space().items()}
        self.search_space = {**defaults, **self.search_space}
        if not isinstance(self.init, ScratchInit):
            shaping = [k for k in objective.shape_params if k in self.searched()]
            if shaping:
                raise ValueError(
                    f"search_space.{shaping[0]}: starting weights (init) fix the model's shape, so"
                    f" {shaping[0]} takes one value, not a range"
                )
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
            init=self.init,
        )
