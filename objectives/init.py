"""Where a run's starting weights come from (the ``init`` of a config), and loading them.

Adding an init kind: its model below (and in ``InitSpec``), and a branch in
``init_weights_file`` (where its file is). Importing this module loads no torch: the service
uses ``init_weights_file`` and ``check_weights_fit`` to check a spec before any worker runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from objectives.paths import DataPathError, check_relative, resolve_under
from objectives.pretrained import get_pretrained, hub_dir, pretrained_file
from objectives.registry import get_objective
from objectives.shapes import NORMALISATION, backbone_shapes, misfit
from objectives.state_file import StateFileError, read_state_shapes
from objectives.strict import StrictModel, StudyName

if TYPE_CHECKING:
    from torch import nn


class InitError(ValueError):
    """The starting weights cannot be found or do not fit the model; the message names the field."""


class ScratchInit(StrictModel):
    """``{"kind": "scratch"}``: random initial weights (the default)."""

    kind: Literal["scratch"]


class FileInit(StrictModel):
    """``{"kind": "file", "path": P}``: a state_dict file under HPO_DATA_DIR."""

    kind: Literal["file"]
    path: str

    @model_validator(mode="after")
    def _relative(self) -> FileInit:
        _check_relative(self.path, "init.path", "HPO_DATA_DIR")
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
    def _relative(self) -> StudyInit:
        if self.weights is not None:
            _check_relative(self.weights, "init.weights", "HPO_ARTIFACT_DIR")
        return self


class TorchvisionInit(StrictModel):
    """``{"kind": "torchvision", "weights": "ResNet18_Weights.IMAGENET1K_V1"}``: torchvision's
    published weights, from torch's hub cache (downloaded only when HPO_ALLOW_DOWNLOAD is true)."""

    kind: Literal["torchvision"]
    weights: str


class PretrainedInit(StrictModel):
    """``{"kind": "pretrained", "weights": "efficientnet_lite0.imagenet"}``: published weights from
    the catalogue of what this installation has (objectives.pretrained); the model takes its inputs
    scaled as they were trained with."""

    kind: Literal["pretrained"]
    weights: str


Init = ScratchInit | FileInit | StudyInit | TorchvisionInit | PretrainedInit
InitSpec = Annotated[Init, Field(discriminator="kind")]


def _check_relative(relative: str, what: str, within: str) -> None:
    try:
        check_relative(relative, what, within)
    except DataPathError as exc:
        raise ValueError(str(exc)) from None


def check_init(init: Init, objective_name: str) -> None:
    """Raise ValueError naming the field when ``init`` cannot serve ``objective_name``."""
    if isinstance(init, PretrainedInit):
        try:
            entry = get_pretrained(init.weights)
        except KeyError as exc:
            raise ValueError(f"init.weights: {exc.args[0]}") from None
        if entry.objective != objective_name:
            raise ValueError(
                f"init.weights: {init.weights!r} are weights for objective {entry.objective!r}, not {objective_name!r}"
            )
    if isinstance(init, TorchvisionInit):
        known = get_objective(objective_name).torchvision_weights
        if init.weights not in known:
            raise ValueError(
                f"init.weights: {init.weights!r} is not torchvision weights for {objective_name!r}"
                f" (known: {', '.join(known) or 'none'})"
            )


def init_weights_file(
    init: Init, *, objective: str, data_dir: str | Path, artifact_dir: str | Path, allow_download: bool
) -> Path | None:
    """The state_dict file ``init`` names (None: from scratch); InitError if it cannot be had."""
    try:
        if isinstance(init, ScratchInit):
            return None
        if isinstance(init, FileInit):
            path = resolve_under(data_dir, init.path, what="init.path", within="HPO_DATA_DIR")
        elif isinstance(init, StudyInit):
            if init.weights is None:
                raise InitError(f"init: study {init.study!r} was not resolved to a weights file")
            path = resolve_under(artifact_dir, init.weights, what="init.weights", within="HPO_ARTIFACT_DIR")
        elif isinstance(init, PretrainedInit):
            path = pretrained_file(init.weights)
        else:
            path = _torchvision_file(objective, init.weights, allow_download)
    except (DataPathError, FileNotFoundError) as exc:
        raise InitError(f"init.weights: {exc}" if isinstance(exc, FileNotFoundError) else str(exc)) from None
    except KeyError as exc:
        raise InitError(f"init.weights: {exc.args[0]}") from None
    if not path.is_file():
        raise InitError(f"init: the weights file {path} does not exist ({_where_from(init)})")
    return path


def _torchvision_file(objective: str, name: str, allow_download: bool) -> Path:
    files = get_objective(objective).torchvision_weights
    if name not in files:
        raise InitError(f"init.weights: {name!r} is not torchvision weights for {objective!r} (known: {list(files)})")
    path = hub_dir() / "checkpoints" / files[name]
    if not path.exists() and allow_download:
        from torch.hub import load_state_dict_from_url
        from torchvision.models import get_weight

        load_state_dict_from_url(get_weight(name).url, model_dir=str(path.parent), progress=False)
    return path


def _where_from(init: Init) -> str:
    if isinstance(init, StudyInit):
        return f"the final weights of trial {init.trial} of study {init.study!r}; was it deleted?"
    if isinstance(init, TorchvisionInit):
        return "torch's hub cache; put the file there, or set HPO_ALLOW_DOWNLOAD=true on a machine with internet access"
    if isinstance(init, PretrainedInit):
        return "the catalogue of pretrained weights; was its package uninstalled?"
    return "under HPO_DATA_DIR"


def input_scaling(init: Init) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel mean and std (pixels in [0, 1]) that ``init``'s weights expect their inputs
    standardised with; None where the model uses its training set's own statistics."""
    if isinstance(init, PretrainedInit):
        entry = get_pretrained(init.weights)
        return entry.mean, entry.std
    return None


def check_weights_fit(path: Path, objective: str, params: dict[str, Any]) -> None:
    """InitError if the state_dict at ``path`` cannot start ``objective``'s model at ``params``
    (read without torch: objectives.state_file; files only torch can read pass, for the worker)."""
    try:
        found = read_state_shapes(path)
    except StateFileError as exc:
        raise InitError(f"init: {exc}") from None
    if found is not None:
        found = {k: v for k, v in found.items() if k not in NORMALISATION}
        problem = misfit(found, backbone_shapes(objective, params), get_objective(objective).head, path.name)
        if problem is not None:
            raise InitError(f"init: {problem}")


def load_initial_weights(model: nn.Module, path: Path, head: str) -> list[str]:
    """Copy the state_dict at ``path`` (loaded with ``weights_only=True``) into ``model``.

    Every tensor must match the model's by name and shape, except the classifier head's (names
    starting with ``head``): the head belongs to the task the weights were trained on, so it
    always keeps its fresh initialisation (starting from the old head cost 2.4 points of test
    accuracy in docs/benchmarks.md §8). Returns the names left at their initialisation;
    InitError names the first tensor that does not fit.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever a file that is not a torch state_dict makes torch.load raise
        raise InitError(f"init: {path.name} is not a readable state_dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint (objectives.checkpoint) holds the model under "model"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InitError(f"init: {path.name} does not hold a state_dict (a dict of tensors)")
    state = {k: v for k, v in state.items() if k not in NORMALISATION}  # the training set's, not the file's
    own = {k: v for k, v in model.state_dict().items() if k not in NORMALISATION}
    backbone = {k: tuple(v.shape) for k, v in own.items() if not k.startswith(head)}
    problem = misfit({k: tuple(v.shape) for k, v in state.items()}, backbone, head, path.name)
    if problem is not None:
        raise InitError(f"init: {problem}")
    model.load_state_dict({name: state[name] for name in backbone}, strict=False)
    return [name for name in own if name.startswith(head)]
