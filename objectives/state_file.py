"""The tensor names and shapes in a saved state_dict, read without torch.

The service checks that a study's starting weights fit its model before it accepts the study,
and the service does not import torch. ``torch.save`` writes a zip whose ``data.pkl`` names
each tensor's storage, offset, size and stride; this module unpickles that with a restricted
unpickler that builds nothing but shapes (the tensor data is never read), so an untrusted
file can neither run code nor cost memory. Files it cannot read this way (torch's legacy
format, a pickle naming other classes) are left to the worker, whose
``torch.load(..., weights_only=True)`` decides.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

Shapes = dict[str, tuple[int, ...]]

_PICKLE_PROTOCOL = 0x80  # the first byte of a pickle (torch's legacy format is one)
MAX_INDEX_BYTES = 4 * 2**20  # data.pkl names the tensors: 15 kB for ResNet-18; larger is not a state_dict


class StateFileError(ValueError):
    """The file is not a state_dict; the message says why."""


class _Unverifiable(Exception):
    """The file names classes this reader does not rebuild: only torch can say what it holds."""


class _TensorShape(tuple):
    """What the restricted unpickler builds in place of a tensor: its size."""


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...], *rest: Any) -> _TensorShape:
    return _TensorShape(size)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _ShapeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name.endswith("Storage"):
            return name  # a storage type: only named in the storage's persistent id
        raise _Unverifiable(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor's storage: its bytes are not needed for its shape


def read_state_shapes(path: Path) -> Shapes | None:
    """The name and shape of every tensor in the state_dict at ``path``; StateFileError if the
    file is not one; None if only torch can tell (see the module docstring).

    A training checkpoint (objectives.checkpoint) is read as the model it holds under "model".
    """
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            if file.read(1) == bytes([_PICKLE_PROTOCOL]):
                return None
        raise StateFileError(f"{path.name} is not a readable state_dict (not a file torch.save wrote)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if not names:
                raise StateFileError(f"{path.name} is not a readable state_dict (a zip without data.pkl)")
            size = archive.getinfo(names[0]).file_size
            if size > MAX_INDEX_BYTES:
                raise StateFileError(f"{path.name} is not a state_dict (its data.pkl is {size / 2**20:.0f} MB)")
            with archive.open(names[0]) as pickled:
                state = _ShapeUnpickler(pickled).load()
    except _Unverifiable:
        return None
    except StateFileError:
        raise
    except Exception as exc:  # whatever a damaged zip or pickle makes the readers raise
        raise StateFileError(f"{path.name} is not a readable state_dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, _TensorShape) for v in state.values()):
        raise StateFileError(f"{path.name} does not hold a state_dict (a dict of tensors)")
    return {str(name): tuple(shape) for name, shape in state.items()}
