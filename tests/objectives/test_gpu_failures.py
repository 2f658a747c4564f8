"""Which exceptions of a run on a GPU end the process (a broken CUDA context), which only the
trial (out of memory), and which are ordinary failures: the real exception types and messages
torch raises, classified without a GPU."""

from __future__ import annotations

import pytest
import torch

from objectives.gpu_failures import GpuFailure, classify, release_cached_memory
from objectives.init import InitError

OOM, POISONS = GpuFailure.OUT_OF_MEMORY, GpuFailure.POISONS_PROCESS
CASES = {
    "allocator out of memory": (
        torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139 GiB"
        ),
        OOM,
    ),
    "cuBLAS workspace": (
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        OOM,
    ),
    "illegal address": (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"), POISONS),
    "device-side assert": (
        RuntimeError("CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable"),
        POISONS,
    ),
    "launch failure": (torch.AcceleratorError("CUDA error: unspecified launch failure"), POISONS),
    "cuDNN": (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), POISONS),
    "lost device": (RuntimeError("No CUDA GPUs are available"), None),  # torch's wording at start-up: not sticky
    "shape mismatch": (RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x16 and 32x10)"), None),
    "missing weights": (InitError("init: the weights file is gone"), None),
    "bad value": (ValueError("optimizer must be 'adam' or 'sgd'"), None),
}


@pytest.mark.parametrize(("exc", "expected"), CASES.values(), ids=CASES.keys())
def test_each_failure_is_classified_by_what_it_leaves_of_the_process(exc, expected):
    assert classify(exc) is expected


def test_a_cuda_error_under_another_exception_still_ends_the_process():
    try:
        try:
            raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
        except RuntimeError as cuda:
            raise ValueError("evaluation failed") from cuda
    except ValueError as outer:
        assert classify(outer) is POISONS


def test_releasing_the_cache_without_cuda_does_nothing():
    release_cached_memory()  # CUDA never initialised in this process: no error, nothing to free
    assert not torch.cuda.is_initialized()
