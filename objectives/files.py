"""Writing torch files so that no reader ever sees one half-written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomically(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
