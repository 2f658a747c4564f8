"""Which failures of a run on a GPU leave the process unable to use it, and which do not.

CUDA reports most errors stickily: after an illegal memory access, a device-side assert or a
lost device, every later call in the same process fails too, so a worker slot that simply
claimed its next trial would fail it in milliseconds, and the next, until the failure guard
paused the study. Such a failure ``POISONS_PROCESS``: the slot tells Optuna and exits, and its
supervisor starts a fresh process with a fresh CUDA context. Running out of GPU memory is the
exception: the context survives, the trial fails, and the slot frees torch's cached blocks so
that sibling slots on the same GPU are not starved.

Torch-free to import (the classification reads exception types and messages; releasing the
cache imports torch only when it is already loaded), so the worker can use it anywhere.
"""

from __future__ import annotations

import sys
from enum import Enum


class GpuFailure(Enum):
    """What a failed run's exception means for the process that ran it."""

    OUT_OF_MEMORY = "out_of_memory"  # the trial fails; the process goes on (after empty_cache)
    POISONS_PROCESS = "poisons_process"  # the CUDA context is broken: the process must end


# torch.OutOfMemoryError (torch.cuda.OutOfMemoryError), and the messages of allocations that fail
# outside the caching allocator (cuBLAS and cuDNN workspaces).
_OUT_OF_MEMORY_TYPES = {"OutOfMemoryError"}
_OUT_OF_MEMORY_MESSAGES = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
# torch.AcceleratorError is what torch (2.8 and later) raises for an error CUDA reports; older code
# paths raise RuntimeError with CUDA's message, and cuBLAS, cuDNN and NCCL raise their own.
_STICKY_TYPES = {"AcceleratorError", "CudaError"}
_STICKY_MESSAGES = (
    "CUDA error",
    "CUDA driver error",
    "CUBLAS_STATUS_",
    "CUDNN_STATUS_",
    "cuDNN error",
    "NCCL error",
    "device-side assert triggered",
    "an illegal memory access was encountered",
    "unspecified launch failure",
)


def classify(exc: BaseException) -> GpuFailure | None:
    """What ``exc`` (or an exception it was raised from) means for the process: out of GPU
    memory, a broken CUDA context, or None (an ordinary failure of the trial alone)."""
    found: GpuFailure | None = None
    for link in _chain(exc):
        names = {cls.__name__ for cls in type(link).__mro__}
        message = str(link)
        if names & _OUT_OF_MEMORY_TYPES or any(m in message for m in _OUT_OF_MEMORY_MESSAGES):
            return GpuFailure.OUT_OF_MEMORY
        if names & _STICKY_TYPES or any(m in message for m in _STICKY_MESSAGES):
            found = GpuFailure.POISONS_PROCESS
    return found


def release_cached_memory() -> None:
    """Hand torch's cached GPU blocks back to the driver (after an out-of-memory failure), so
    that other processes on the same GPU can use them; nothing if CUDA was never used here."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, outermost first (no cycles)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not seen for seen in chain):
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain
