"""A lineage's checkpoints: the one before the latest is kept, and a damaged latest one costs an
epoch, not the whole run."""

from __future__ import annotations

import pytest
import torch

from objectives.checkpoint import Resumable, checkpoint_epoch, find_resumable, previous_path, reseeded
from objectives.train import train
from tests.conftest import training_config
from tests.objectives.test_train import FAST


class Killed(Exception):
    pass


def kill_after(last: int):
    def report(epoch: int, _accuracy: float) -> None:
        if epoch == last:
            raise Killed

    return report


def _cut_short(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_each_save_keeps_the_checkpoint_before_it(tiny_data, tmp_path):
    ckpt = tmp_path / "trial-0.pt"
    train(tiny_data, training_config(FAST, epochs=2, seed=3), checkpoint_path=ckpt)
    assert checkpoint_epoch(ckpt) == 2
    assert checkpoint_epoch(previous_path(ckpt)) == 1


def test_a_truncated_checkpoint_resumes_from_the_one_before_and_ends_as_the_uninterrupted_run(tiny_data, tmp_path):
    uninterrupted = train(tiny_data, training_config(FAST, epochs=3, seed=3))
    ckpt = tmp_path / "trial-0.pt"
    with pytest.raises(Killed):  # after epoch 2's checkpoint, as a killed worker would
        train(tiny_data, training_config(FAST, epochs=3, seed=3), checkpoint_path=ckpt, report=kill_after(2))
    _cut_short(ckpt)

    found = find_resumable(ckpt)
    assert (found.path, found.epoch) == (previous_path(ckpt), 1)
    assert "trial-0.pt was unreadable" in found.note and "resumed from trial-0.previous.pt" in found.note
    assert (tmp_path / "trial-0.pt.unreadable").exists() and not ckpt.exists()

    resumed = train(tiny_data, training_config(FAST, epochs=3, seed=3), checkpoint_path=ckpt, resume_from=found.path)
    assert resumed.val_accuracy == uninterrupted.val_accuracy and resumed.epochs == 3
    assert checkpoint_epoch(ckpt) == 3 and checkpoint_epoch(previous_path(ckpt)) == 2


def test_with_no_readable_checkpoint_the_retry_starts_afresh_and_says_why(tiny_data, tmp_path):
    ckpt = tmp_path / "trial-0.pt"
    train(tiny_data, training_config(FAST, epochs=2, seed=3), checkpoint_path=ckpt)
    _cut_short(ckpt)
    _cut_short(previous_path(ckpt))
    found = find_resumable(ckpt)
    assert (found.path, found.epoch) == (None, None)
    assert found.note.count("unreadable") == 2 and found.note.endswith("started afresh")


def test_no_checkpoint_at_all_is_a_plain_fresh_start(tmp_path):
    assert find_resumable(tmp_path / "trial-0.pt") == Resumable(None, None, None)


def _as_if_from_a_gpu(path) -> None:
    """Give every fold the generator state a CUDA generator saves (16 bytes: its seed and offset),
    unlabelled, as checkpoints were written before the device type was recorded."""
    payload = torch.load(path, weights_only=True)
    for fold in payload["folds"]:
        fold["generator"] = torch.arange(16, dtype=torch.uint8)
        del fold["generator_device"]
    torch.save(payload, path)


def test_a_checkpoint_whose_generator_ran_on_a_gpu_resumes_on_cpu_reseeded(tiny_data, tmp_path):
    """A CPU generator cannot take a CUDA generator's state (set_state raised on every resume, and
    each failure counted towards pausing the study): the generator is reseeded from the fold's
    seed and the epoch instead, the same way every time."""
    ckpt = tmp_path / "trial-0.pt"
    config = training_config(FAST, epochs=3, seed=7)
    with pytest.raises(Killed):
        train(tiny_data, config, checkpoint_path=ckpt, report=kill_after(1))
    assert find_resumable(ckpt).generator_device == "cpu"  # recorded with the state
    _as_if_from_a_gpu(ckpt)
    assert find_resumable(ckpt).generator_device == "cuda"  # told by the state's size
    resumed = [train(tiny_data, config, resume_from=ckpt) for _ in range(2)]
    assert resumed[0].epochs == resumed[1].epochs == 3
    assert (resumed[0].val_accuracy, resumed[0].loss) == (resumed[1].val_accuracy, resumed[1].loss)


def test_a_fold_s_generator_is_reseeded_by_seed_and_epoch():
    assert len({reseeded(seed, epoch) for seed in range(10) for epoch in range(1, 50)}) == 490
