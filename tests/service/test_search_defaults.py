"""The sampler and pruner a spec builds: Hyperband's brackets and TPE's start-up, the median pruner."""

from __future__ import annotations

import optuna
import pytest

from service.spec import StudySpec
from service.storage import build_pruner, build_sampler, hyperband_brackets, trial_seed
from tests.conftest import make_spec


def spec_with(**overrides) -> StudySpec:
    return StudySpec.model_validate(make_spec("s", **overrides))


def initialised_brackets(pruner: optuna.pruners.HyperbandPruner) -> int:
    """How many brackets Optuna's pruner really made (it makes them on its first prune call)."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    trial.report(0.5, 1)
    trial.should_prune()
    return len(pruner._pruners)


@pytest.mark.parametrize(
    ("epochs", "pruner", "expected"),
    [
        (8, {"name": "hyperband"}, 2),
        (9, {"name": "hyperband"}, 3),
        (27, {"name": "hyperband"}, 4),
        (100, {"name": "hyperband", "min_resource": 2, "reduction_factor": 4}, 3),
        (2, {"name": "hyperband"}, 1),
        (10, {"name": "hyperband", "max_resource": 3}, 2),
    ],
)
def test_bracket_count_matches_optunas_hyperband(epochs, pruner, expected):
    spec = spec_with(epochs=epochs, pruner=pruner)
    assert hyperband_brackets(spec) == expected
    assert initialised_brackets(build_pruner(spec)) == expected


def test_tpe_start_up_is_shared_among_hyperband_brackets():
    """TPE under Hyperband models each bracket apart: 10 start-up trials over 2 brackets is 5 each."""
    tpe = {"name": "tpe", "n_startup_trials": 10}
    assert build_sampler(spec_with(epochs=8, sampler=tpe))._n_startup_trials == 5
    halving = spec_with(epochs=8, sampler=tpe, pruner={"name": "successive_halving"})
    assert build_sampler(halving)._n_startup_trials == 10
    assert build_sampler(spec_with(epochs=27, sampler=tpe))._n_startup_trials == 3  # 4 brackets: ceil(10 / 4)


def test_median_pruner_with_a_long_interval_only_cuts_at_the_first_checked_epoch():
    spec = spec_with(pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1, "interval_steps": 100})
    study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))
    done = study.ask()
    for epoch in range(1, 5):
        done.report(0.5, epoch)
    study.tell(done, 0.5)

    weak_start = study.ask()
    weak_start.report(0.1, 1)
    assert weak_start.should_prune()  # below the median at epoch 1

    weak_later = study.ask()
    weak_later.report(0.6, 1)
    assert not weak_later.should_prune()
    weak_later.report(0.1, 2)
    assert not weak_later.should_prune()  # epoch 2 is never checked


def first_draw(sampler_seed: int, offset: int) -> float:
    """The learning rate a seeded random sampler proposes for a study's trial number ``offset``."""
    sampler = build_sampler(spec_with(sampler={"name": "random", "seed": sampler_seed}), seed_offset=offset)
    return optuna.create_study(sampler=sampler).ask().suggest_float("lr", 1e-4, 1e-1, log=True)


def test_seeded_trials_are_reproducible_and_unrelated_between_adjacent_study_seeds():
    assert first_draw(0, 1) == first_draw(0, 1)
    assert first_draw(0, 0) != first_draw(0, 1)
    assert first_draw(1, 0) != first_draw(0, 1)  # seed + offset would make these equal
    assert len({trial_seed(seed, offset) for seed in range(20) for offset in range(20)}) == 400
    assert trial_seed(-1, 0) != trial_seed(1, 0)
