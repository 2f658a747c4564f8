"""Training on CPU keeps freed memory for the next step instead of page-faulting it in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is the subject")

# Allocate, fill and free a 64 MiB tensor 40 times: above glibc's largest automatic mmap
# threshold (32 MiB), so by default each round maps fresh pages and faults all 16,384 in.
ROUNDS, PAGES = 40, 16_384
FAULTS_OF_ROUNDS = f"""
import resource, torch
torch.ones(1)
def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = minor_faults()
for _ in range({ROUNDS}):
    torch.ones(16 << 20).sum()
print(minor_faults() - before)
"""

TRAIN_ON_CPU_FIRST = """
from objectives.config import TrainingConfig
from objectives.data import load_dataset
from objectives.train import train
from tests.conftest import DATA_ROOT
source = {"kind": "imagefolder", "path": "cifar10-sample", "limit": 100, "val_fraction": 0.2}
data = load_dataset(source, data_dir=DATA_ROOT, device="cpu")
train(data, TrainingConfig(dataset=source, epochs=1, params={"width": 0.125}), device="cpu")
"""


def _faults(prelude: str) -> int:
    code = prelude + FAULTS_OF_ROUNDS
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_blocks_are_reused_once_kept() -> None:
    default = _faults("")
    kept = _faults("from objectives.allocator import keep_freed_memory\nassert keep_freed_memory()\n")
    assert default > 0.9 * ROUNDS * PAGES  # each round faulted its pages in again
    assert kept < ROUNDS * PAGES / 4  # a few rounds' pages (the heap grows now and then), then reuse


def test_training_on_cpu_keeps_freed_memory() -> None:
    assert _faults(TRAIN_ON_CPU_FIRST) < ROUNDS * PAGES / 4
