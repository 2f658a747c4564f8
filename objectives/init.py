"""Where a run's starting weights come from (the ``init`` of a config), and loading them.

Adding an init kind: a branch in ``init_weights_file`` (where its file is), and its config
model in service/config.py. Importing this module loads no torch: the service uses
``hub_dir`` and ``init_weights_file`` to check a spec before any worker runs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from objectives.paths import DataPathError, resolve_under
from objectives.registry import get_objective

if TYPE_CHECKING:
    from torch import nn


class InitError(ValueError):
    """The starting weights cannot be found or do not fit the model; the message names the field."""


def hub_dir() -> Path:
    """torch's hub cache, as ``torch.hub.get_dir()`` finds it (TORCH_HOME, XDG_CACHE_HOME, ~/.cache)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "torch" / "hub"


def init_weights_file(
    init: dict[str, Any], *, objective: str, data_dir: str | Path, artifact_dir: str | Path, allow_download: bool
) -> Path | None:
    """The state_dict file ``init`` names (None: from scratch); InitError if it cannot be had."""
    kind = init.get("kind", "scratch")
    try:
        if kind == "scratch":
            return None
        if kind == "file":
            path = resolve_under(data_dir, init["path"], what="init.path", within="HPO_DATA_DIR")
        elif kind == "study":
            if not init.get("weights"):
                raise InitError(f"init: study {init.get('study')!r} was not resolved to a weights file")
            path = resolve_under(artifact_dir, init["weights"], what="init.weights", within="HPO_ARTIFACT_DIR")
        elif kind == "torchvision":
            path = _torchvision_file(objective, init["weights"], allow_download)
        else:
            raise InitError(f"init.kind: unknown kind {kind!r} (known: scratch, file, study, torchvision)")
    except DataPathError as exc:
        raise InitError(str(exc)) from None
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


def _where_from(init: dict[str, Any]) -> str:
    kind = init.get("kind")
    if kind == "study":
        return f"the final weights of trial {init.get('trial')} of study {init.get('study')!r}; was it deleted?"
    if kind == "torchvision":
        return "torch's hub cache; put the file there, or set HPO_ALLOW_DOWNLOAD=true on a machine with internet access"
    return "under HPO_DATA_DIR"


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
    from objectives.model import NORMALISATION  # the pixel statistics are the training set's, not the file's

    state = {k: v for k, v in state.items() if k not in NORMALISATION}
    own = {k: v for k, v in model.state_dict().items() if k not in NORMALISATION}
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise InitError(f"init: {path.name} holds {unexpected[0]!r}, which this model lacks (another architecture?)")
    kept, loaded = [], {}
    for name, tensor in own.items():
        if name.startswith(head):
            kept.append(name)
        elif name not in state:
            raise InitError(f"init: {path.name} lacks {name!r} (another architecture?)")
        elif state[name].shape == tensor.shape:
            loaded[name] = state[name]
        else:
            raise InitError(
                f"init: {name!r} in {path.name} has shape {tuple(state[name].shape)}, the model needs "
                f"{tuple(tensor.shape)} (a different width or stem?)"
            )
    model.load_state_dict(loaded, strict=False)
    return kept
