"""The sampler and pruner a spec builds: TPE's start-up, the median pruner, seeding, every sampler."""

from __future__ import annotations

import optuna
import pytest

from service.spec.schema import StudySpec
from service.spec.strategy import build_pruner, build_sampler, trial_seed
from tests.conftest import make_spec


def spec_with(**overrides) -> StudySpec:
    return StudySpec.model_validate(make_spec("s", **overrides))


def draw(trial: optuna.Trial) -> dict[str, float]:
    """Suggest the three searched parameters of ``make_spec``'s space."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "aug_strength": trial.suggest_float("aug_strength", 0.0, 1.0),
    }


def random_draw(seed: int) -> dict[str, float]:
    """What a random sampler with ``seed`` proposes: a TPE start-up trial with that seed proposes the same."""
    return draw(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask())


def test_tpe_starts_with_5_random_trials_by_default():
    spec = spec_with(sampler={"name": "tpe", "seed": 3}, pruner={"name": "none"})
    study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))
    was_random = []
    for slot in range(7):
        study.sampler = build_sampler(spec, seed_offset=slot)  # as the worker does for every trial
        trial = study.ask()
        params = draw(trial)
        was_random.append(params == random_draw(trial_seed(3, slot)))
        study.tell(trial, params["aug_strength"])
    assert was_random == [True] * 5 + [False] * 2


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


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "qmc"])
def test_every_sampler_the_spec_offers_proposes_configs_past_its_start_up(sampler):
    """cmaes and qmc need packages of their own (cmaes, scipy): a spec must not offer what cannot run."""
    spec = spec_with(sampler={"name": sampler, "seed": 0})
    study = optuna.create_study(direction="maximize", pruner=build_pruner(spec))
    for slot in range(8):  # beyond TPE's 5 and CMA-ES's 1 start-up trials
        study.sampler = build_sampler(spec, seed_offset=slot)
        trial = study.ask()
        params = draw(trial)
        study.tell(trial, params["aug_strength"] - abs(params["lr"] - 3e-3))
    assert len({t.params["lr"] for t in study.trials}) == 8
