"""What every benchmark shares: the machine description, result files, the data root."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        # the vector ISA picks oneDNN's kernels, so CPU results (not just speeds) differ between hosts
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        model = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"], capture_output=True, text=True)
        info["cpu_model"] = model.stdout.split(":", 1)[-1].strip()
    except OSError:
        pass
    return info


def shared_datasets() -> Path:
    """The workplace's real CIFAR-10 sets (../shared/datasets, or HPO_SHARED_DATASETS): read in place."""
    return Path(os.environ.get("HPO_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def cache_dir() -> Path:
    """Where decoded datasets are kept (HPO_CACHE_DIR, as the worker reads it)."""
    return Path(os.environ.get("HPO_CACHE_DIR", Path.home() / ".cache" / "hpo"))


def data_dir() -> Path:
    """HPO_DATA_DIR if set, else the bundled sample's folder."""
    return Path(os.environ.get("HPO_DATA_DIR", REPO / "data"))


def save(name: str, payload: dict[str, Any], folder: Path = RESULTS) -> Path:
    """Write <folder>/<name>.json (default benchmarks/results/) with the machine and a timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(
        json.dumps(
            {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}, indent=2
        )
        + "\n"
    )
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width table."""
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "" if value is None else str(value)
