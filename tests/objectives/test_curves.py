"""objectives.curves: a run's learning curve as the folds' mean, and as a trial records it (bounded)."""

from __future__ import annotations

from objectives.curves import MAX_POINTS, EpochMetrics, fold_log, mean_curve, recorded


def test_a_k_fold_curve_is_the_folds_mean_with_the_images_of_all_folds_per_second():
    logs = [[fold_log(1.0, 2.0, 4.0, 100)], [fold_log(3.0, 4.0, 4.0, 300)]]
    (point,) = mean_curve(logs, [[0.5], [0.7]])
    assert point == EpochMetrics(
        epoch=1, train_loss=2.0, val_loss=3.0, val_accuracy=0.6, seconds=4.0, images_per_second=100.0
    )


def test_epochs_checkpointed_before_logs_were_kept_are_left_out_and_the_rest_numbered_right():
    (point,) = mean_curve([[fold_log(1.0, 2.0, 1.0, 10)]], [[0.1, 0.2, 0.3]])  # 3 epochs, the last one logged
    assert point.epoch == 3 and point.val_accuracy == 0.3


def test_a_recorded_curve_is_a_list_per_figure_bounded_to_an_even_sample_and_the_last_epoch():
    curve = [EpochMetrics(e, 1 / e, 2 / e, 0.123456789, 1.0, 10.0) for e in range(1, 1001)]
    kept = recorded(curve)
    assert set(kept) == {"epoch", "train_loss", "val_loss", "val_accuracy", "seconds", "images_per_second"}
    assert len(kept["epoch"]) == MAX_POINTS and kept["epoch"][0] == 1 and kept["epoch"][-1] == 1000
    assert kept["epoch"] == sorted(set(kept["epoch"]))
    assert kept["val_accuracy"][0] == 0.12346  # five significant digits
    short = recorded(curve[:3])
    assert short["epoch"] == [1, 2, 3] and short["train_loss"] == [1.0, 0.5, 0.33333]
