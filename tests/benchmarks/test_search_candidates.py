"""The candidate searches of benchmarks/search_candidates.py are specs the service accepts, each
differing from the defaults in what its name says (a renamed spec field would fail here, not in
an hour-long benchmark)."""

from __future__ import annotations

import optuna

from benchmarks.search_candidates import candidates


def _built(name: str) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner]:
    sampler_for, pruner = candidates(quick=True)[name](0, 6, {"batch_size": 32, "lr": 0.003, "aug_strength": 0.0})
    return sampler_for(0), pruner


def test_every_candidate_builds_and_each_changes_what_it_names():
    for name in candidates(quick=True):
        sampler, pruner = _built(name)
        assert isinstance(sampler, optuna.samplers.BaseSampler) and isinstance(pruner, optuna.pruners.BasePruner)
    sampler, pruner = _built("defaults")
    assert isinstance(sampler, optuna.samplers.TPESampler) and isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert _built("TPE, 10 start-up trials")[0]._n_startup_trials == 10 != sampler._n_startup_trials
    assert _built("Hyperband, reduction 2")[1]._reduction_factor == 2 != pruner._reduction_factor
    assert isinstance(_built("no pruning")[1], optuna.pruners.NopPruner)
    assert isinstance(_built("median pruner")[1], optuna.pruners.MedianPruner)
