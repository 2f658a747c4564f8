"""Keep freed memory in the process while training on CPU, instead of handing it back every step.

A training step allocates and frees the same large buffers every time (an activation of the
first block is 8 MB at width 0.25 and 34 MB at width 1.0, batch 128). By default glibc's
malloc serves large blocks with fresh mmap() calls and trims the heap's free top back to the
kernel, so every step page-faults its buffers in again, zero-filled by the kernel: about
300,000 minor faults an epoch of the bundled sample at width 0.25 and 2 million at width 1.0,
a third of the training loop's CPU time spent in the kernel (docs/benchmarks.md §1). Raising
both thresholds keeps those pages in the process for the next step. On CUDA the activations
live in torch's caching allocator, so only CPU training asks for this.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks below 1 GiB come from the heap, and up to 1 GiB of free heap stays


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks under 1 GiB for reuse; once per process.

    Returns whether it took effect: False, with nothing changed, where the C library is not
    glibc (macOS, musl), which have their own allocators.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
