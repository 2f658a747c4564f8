"""Planning worker slots from the command line, and the trial quota they share."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from worker.cli import build_parser
from worker.slots import TrialQuota, child_mask, plan_slots


def _plan(*argv: str, gpus: int = 0, cpus: int = 2, mask: str | None = None):
    return plan_slots(build_parser().parse_args(list(argv)), gpus, cpus, mask)


def test_cpu_default_when_no_gpu():
    slots = _plan()
    assert [(s.device, s.threads) for s in slots] == [("cpu", 2)]


def test_gpus_times_trials_per_gpu_each_sees_its_own_gpu():
    slots = _plan("--gpus", "0,1", "--trials-per-gpu", "2", gpus=2)
    assert [s.cuda_visible for s in slots] == ["0", "0", "1", "1"]
    assert {s.device for s in slots} == {"cuda"}
    assert [s.cuda_visible for s in _plan("--gpus", "all", gpus=3)] == ["0", "1", "2"]


UUIDS = "GPU-8f1c6a4e-0b7d-4c55-9a1e-1d2c3b4a5f60,GPU-00aa11bb-22cc-33dd-44ee-55ff66778899"


@pytest.mark.parametrize(
    ("mask", "gpus", "children"),
    [
        (None, 2, ["0", "1"]),  # unset: the parent sees every GPU, its indices are physical
        ("2,3", 2, ["2", "3"]),  # someone reserved 0 and 1: the children must not train there
        ("3, 1", 2, ["3", "1"]),  # the parent's order, spaces allowed
        (UUIDS, 2, UUIDS.split(",")),
        ("MIG-4f2e1d0c-aaaa-bbbb-cccc-123456789abc", 1, ["MIG-4f2e1d0c-aaaa-bbbb-cccc-123456789abc"]),
    ],
)
def test_a_child_s_gpu_is_mapped_through_the_parent_s_mask(mask, gpus, children):
    assert [s.cuda_visible for s in _plan("--gpus", "all", gpus=gpus, mask=mask)] == children
    assert [s.cuda_visible for s in _plan("--gpus", str(gpus - 1), gpus=gpus, mask=mask)] == children[-1:]


def test_an_index_beyond_the_parent_s_mask_is_a_clear_error():
    with pytest.raises(ValueError, match=r"GPU 2 is not in CUDA_VISIBLE_DEVICES='0,1'"):
        child_mask("0,1", 2)


@pytest.mark.parametrize(
    ("argv", "gpus", "message"),
    [
        (("--gpus", "0"), 0, "no CUDA device is visible here; use --gpus cpu"),
        (("--gpus", "3"), 2, "no GPU 3 here"),
        (("--gpus", "one"), 2, "--gpus takes indices"),
        (("--trials-per-gpu", "0"), 0, "at least 1"),
    ],
)
def test_impossible_requests_are_clear_errors(argv, gpus, message):
    with pytest.raises(ValueError, match=message):
        _plan(*argv, gpus=gpus)


def test_the_trial_quota_is_shared_and_a_reservation_can_be_given_back():
    quota = TrialQuota(mp.get_context("spawn"), max_trials=2)
    assert quota.take() and quota.take()
    assert not quota.take()  # --max-trials 2: both taken
    quota.give_back()  # a slot found no work after all
    assert quota.take() and not quota.take()
    unlimited = TrialQuota(mp.get_context("spawn"), max_trials=None)
    assert all(unlimited.take() for _ in range(100))


def test_a_cpu_worker_starts_its_slots_without_importing_torch(tmp_path):
    # torch's import (1.5 s) in the parent delayed every slot's first trial (docs/benchmarks.md §12)
    probe = (
        "import sys\n"
        "import worker.supervisor as supervisor\n"
        "supervisor.Supervisor.run = lambda self: print(len(self.slots), 'torch' in sys.modules) or 0\n"
        "from worker import cli\n"
        "sys.exit(cli.main(['--gpus', 'cpu', '--trials-per-gpu', '2']))\n"
    )
    env = {**os.environ, "HPO_DATABASE_URL": f"sqlite:///{tmp_path / 'hpo.db'}"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "False"]
