"""The training loop on real CIFAR-10 images, on CPU."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from objectives.checkpoint import checkpoint_epoch
from objectives.curves import EpochMetrics
from objectives.data import Split
from objectives.evaluate import _shifted, evaluate
from objectives.model import build_cnn
from objectives.optimization import MIN_ONE_CYCLE_STEPS
from objectives.train import train
from tests.conftest import StopTraining, stop_after_first_epoch, training_config

FAST = {"width": 0.125, "lr": 0.003, "batch_size": 64, "aug_strength": 0.3}


def test_model_learns_well_above_chance(small_data):
    params = {"width": 0.25, "lr": 0.003, "batch_size": 64, "aug_strength": 0.2}
    result = train(small_data, training_config(params, epochs=3, seed=0))
    assert result.epochs == 3
    assert result.val_accuracy > 0.25, result  # chance is 0.10 on ten classes
    assert result.test_accuracy > 0.25, result
    assert result.images_per_second > 0
    assert result.device == "cpu"
    assert not {"fold_val_accuracies", "fold_test_accuracies", "val_accuracy_std"} & set(result.as_dict())  # holdout


def test_resumed_run_ends_identical_to_uninterrupted(tiny_data, tmp_path):
    curves: dict[str, list[EpochMetrics]] = {}
    full = train(tiny_data, training_config(FAST, epochs=3, seed=7), on_epoch=lambda c: curves.update(full=c))
    ckpt = tmp_path / "state.pt"
    with pytest.raises(StopTraining):
        train(tiny_data, training_config(FAST, epochs=3, seed=7), checkpoint_path=ckpt, report=stop_after_first_epoch)
    assert checkpoint_epoch(ckpt) == 1
    resumed_epochs: list[int] = []
    resumed = train(
        tiny_data,
        training_config(FAST, epochs=3, seed=7),
        resume_from=ckpt,
        report=lambda epoch, _acc: resumed_epochs.append(epoch),
        on_epoch=lambda c: curves.update(resumed=c),
    )
    assert resumed_epochs == [2, 3]  # epoch 1 is not run again
    # the learning curve: every epoch's losses and accuracy, those before the resume from the checkpoint
    assert [point.epoch for point in curves["resumed"]] == [1, 2, 3]
    different = ("seconds", "images_per_second")  # the figures of a run's own clock
    for whole, resumed_point in zip(curves["full"], curves["resumed"], strict=True):
        assert {k: v for k, v in asdict(whole).items() if k not in different} == {
            k: v for k, v in asdict(resumed_point).items() if k not in different
        }
    last = curves["full"][-1]
    assert (
        last.train_loss == full.loss and last.val_accuracy == full.val_accuracy
    )  # the flip-only view, as epochs measure
    assert 0 < last.val_loss < 5 and last.seconds > 0 and last.images_per_second > 0
    assert resumed.epochs == 3
    assert resumed.val_accuracy == full.val_accuracy
    assert resumed.test_accuracy == full.test_accuracy
    assert resumed.loss == pytest.approx(full.loss, abs=0)


def test_raising_report_stops_after_that_epoch(tiny_data):
    seen: list[tuple[int, float]] = []

    class Pruned(Exception):
        pass

    def report(epoch: int, val_accuracy: float) -> None:
        seen.append((epoch, val_accuracy))
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train(tiny_data, training_config(FAST, epochs=5, seed=0), report=report)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0.0 <= acc <= 1.0 for _, acc in seen)


def test_checkpoint_is_written_every_epoch(tiny_data, tmp_path):
    epochs_on_disk = []
    ckpt = tmp_path / "c.pt"
    train(
        tiny_data,
        training_config(FAST, epochs=2, seed=0),
        checkpoint_path=ckpt,
        report=lambda epoch, _acc: epochs_on_disk.append(checkpoint_epoch(ckpt)),
    )
    assert epochs_on_disk == [1, 2]
    payload = torch.load(ckpt, weights_only=True)
    assert len(payload["history"]) == 2


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match=r"params\.dropout: not a parameter of 'cnn'"):
        training_config({"dropout": 0.5}, epochs=1)


def test_sgd_optimizer_trains(tiny_data):
    result = train(
        tiny_data, training_config({**FAST, "optimizer": "sgd", "lr": 0.05, "label_smoothing": 0.1}, epochs=1, seed=0)
    )
    assert result.loss > 0 and result.epochs == 1


def test_runs_too_short_for_a_one_cycle_schedule_train_at_a_constant_rate(tiny_data, tmp_path):
    # A large batch on tiny data: 2 epochs of one or two steps each. OneCycleLR used to divide by zero here.
    steps = 2 * -(-len(tiny_data.train) // 256)
    assert steps < MIN_ONE_CYCLE_STEPS
    checkpoint = tmp_path / "short.pt"
    params = {**FAST, "batch_size": 256, "lr": 0.01}
    first = train(tiny_data, training_config(params, epochs=2, seed=0), checkpoint_path=checkpoint)
    assert first.epochs == 2 and first.loss > 0
    resumed = train(
        tiny_data, training_config(params, epochs=2, seed=0), checkpoint_path=checkpoint, resume_from=checkpoint
    )
    assert resumed.val_accuracy == first.val_accuracy  # its checkpoint resumes like any other


def test_eval_flip_predicts_the_same_for_an_image_and_its_mirror(tiny_data):
    """With eval_flip an image and its mirror image get one prediction (their mean): accuracy on a
    mirrored split equals accuracy on the split. Without it the two differ for a model that
    tells left from right."""
    torch.manual_seed(3)
    model = build_cnn(width=0.125, num_classes=len(tiny_data.classes))
    with torch.no_grad():  # a random model with a strong left-right asymmetry
        first = next(model.parameters())
        first.add_(torch.linspace(-2, 2, 3).view(1, 1, 1, 3))
    mean, std = tiny_data.mean, tiny_data.std
    split = Split(
        torch.cat([tiny_data.val.images, tiny_data.test.images]),
        torch.cat([tiny_data.val.labels, tiny_data.test.labels]),
    )
    mirrored = Split(split.images.flip(3), split.labels)

    def accuracies(flip: bool) -> tuple[float, float]:
        return evaluate(model, split, mean, std, flip=flip), evaluate(model, mirrored, mean, std, flip=flip)

    with_flip, without = accuracies(True), accuracies(False)
    assert with_flip[0] == with_flip[1]
    assert without[0] != without[1]


def test_a_shifted_view_moves_the_image_a_pixel_and_reflects_the_edge():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    down_right, up_left = _shifted(images, 1, 1), _shifted(images, -1, -1)
    assert torch.equal(down_right[..., 1:, 1:], images[..., :-1, :-1])
    assert torch.equal(up_left[..., :-1, :-1], images[..., 1:, 1:])
    assert torch.equal(down_right[..., 0, 1:], images[..., 1, :-1])  # the new top row mirrors row 1


def test_eval_shift_changes_the_final_evaluation_only(tiny_data):
    """The learning curve is measured without the shifted views; the final metrics with them."""
    curves: dict[bool, list[float]] = {True: [], False: []}
    results = {
        shift: train(
            tiny_data,
            training_config({**FAST, "eval_shift": shift}, epochs=2, seed=5),
            report=lambda _epoch, value, shift=shift: curves[shift].append(value),
        )
        for shift in (True, False)
    }
    assert curves[True] == curves[False] and results[True].loss == results[False].loss
    assert results[False].val_accuracy == curves[False][-1]
    on, off = results[True], results[False]
    assert (on.val_accuracy, on.test_accuracy) != (off.val_accuracy, off.test_accuracy)


def test_eval_flip_is_a_parameter_on_by_default(tiny_data):
    on = train(tiny_data, training_config(FAST, epochs=1, seed=5))
    off = train(tiny_data, training_config({**FAST, "eval_flip": False}, epochs=1, seed=5))
    assert on.loss == off.loss  # training is the same
    assert (on.val_accuracy, on.test_accuracy) != (off.val_accuracy, off.test_accuracy)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_searched_momentum_is_the_one_the_optimiser_uses(tiny_data, tmp_path, optimizer):
    """OneCycleLR cycles momentum by default, overwriting SGD's momentum and Adam's beta1 at every
    step: two momenta then trained bit-identical models. Each must now change the result."""
    weights = []
    for momentum in (0.5, 0.9):
        params = {**FAST, "optimizer": optimizer, "momentum": momentum}
        path = tmp_path / f"{optimizer}-{momentum}.pt"
        train(tiny_data, training_config(params, epochs=2, seed=3), weights_path=path)
        weights.append(torch.load(path, weights_only=True))
    differing = [name for name, tensor in weights[0].items() if not torch.equal(tensor, weights[1][name])]
    assert differing, f"{optimizer}: momentum 0.5 and 0.9 trained identical weights"
