"""What each worker slot runs on (planned from the command line), and the trial quota slots share."""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlotConfig:
    """What one slot's child process runs on and how (picklable: it crosses a spawn)."""

    index: int
    device: str  # "cpu" or "cuda"
    cuda_visible: str | None  # CUDA_VISIBLE_DEVICES for this child, e.g. "1"
    threads: int | None  # torch CPU threads (None: torch's default)
    study: str | None  # serve only this study
    burst: bool  # exit when no work is left
    poll_seconds: float  # wait between looks for work


def process_identity(pid: int) -> str:
    """HOST:PID, the ``worker`` user attribute of the trials a slot process claims."""
    return f"{socket.gethostname()}:{pid}"


class TrialQuota:
    """``worker --max-trials N``: how many trials all slots of one worker may start together.

    The count lives in shared memory made by the supervisor, so the children see one number.
    """

    def __init__(self, context: Any, max_trials: int | None) -> None:
        self.max_trials = max_trials
        self._started = context.Value("i", 0) if max_trials is not None else None

    def take(self) -> bool:
        """Reserve one trial; False when the quota is used up."""
        if self._started is None:
            return True
        with self._started.get_lock():
            if self._started.value >= self.max_trials:
                return False
            self._started.value += 1
            return True

    def give_back(self) -> None:
        """Return a reservation that started no trial."""
        if self._started is not None:
            with self._started.get_lock():
                self._started.value -= 1


def plan_slots(
    args: argparse.Namespace, gpu_count: int, cpu_count: int, parent_mask: str | None = None
) -> list[SlotConfig]:
    """One SlotConfig per child; ValueError with a clear message for impossible requests.

    ``--gpus`` indices count the GPUs this process sees; ``parent_mask`` is its own
    CUDA_VISIBLE_DEVICES (None: unset), through which each child's mask is mapped (see child_mask).
    """
    if args.trials_per_gpu < 1:
        raise ValueError("--trials-per-gpu must be at least 1")
    if args.max_trials is not None and args.max_trials < 1:
        raise ValueError("--max-trials must be at least 1")
    choice = args.gpus or ("all" if gpu_count else "cpu")
    common = {"study": args.study, "burst": args.burst, "poll_seconds": args.poll}
    if choice == "cpu":
        threads = max(1, cpu_count // args.trials_per_gpu)
        return [
            SlotConfig(index=i, device="cpu", cuda_visible="", threads=threads, **common)
            for i in range(args.trials_per_gpu)
        ]
    if gpu_count == 0:
        raise ValueError(f"--gpus {choice}: no CUDA device is visible here; use --gpus cpu")
    return [
        SlotConfig(index=i, device="cuda", cuda_visible=child_mask(parent_mask, gpu), threads=None, **common)
        for i, gpu in enumerate(g for g in _gpu_indices(choice, gpu_count) for _ in range(args.trials_per_gpu))
    ]


def _gpu_indices(choice: str, gpu_count: int) -> list[int]:
    if choice == "all":
        return list(range(gpu_count))
    try:
        gpus = [int(g) for g in choice.split(",")]
    except ValueError:
        raise ValueError(f"--gpus takes indices like 0,1, 'all' or 'cpu', not {choice!r}") from None
    bad = [g for g in gpus if not 0 <= g < gpu_count]
    if bad:
        raise ValueError(f"--gpus: no GPU {bad[0]} here (visible: 0..{gpu_count - 1})")
    return gpus


def child_mask(parent_mask: str | None, index: int) -> str:
    """CUDA_VISIBLE_DEVICES for a child that trains on the parent's GPU ``index``.

    ``index`` counts the GPUs the parent sees, so it is mapped through the parent's own mask
    (indices or UUIDs such as ``GPU-8f1c...`` or ``MIG-...``): with ``CUDA_VISIBLE_DEVICES=2,3``,
    the parent's GPU 0 is physical GPU 2, never GPU 0, which someone else may have reserved.
    """
    if parent_mask is None:
        return str(index)
    visible = [entry.strip() for entry in parent_mask.split(",") if entry.strip()]
    if not 0 <= index < len(visible):
        raise ValueError(f"GPU {index} is not in CUDA_VISIBLE_DEVICES={parent_mask!r}")
    return visible[index]
