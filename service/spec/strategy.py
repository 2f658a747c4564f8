"""The sampler and the pruner a study spec names, built as Optuna objects."""

from __future__ import annotations

import numpy as np
import optuna

from service.spec.schema import GridSampler, Hyperband, Median, StudySpec, SuccessiveHalving


def build_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler a spec names, with its options.

    Workers build a fresh sampler for every trial; ``seed_offset`` (the trial's slot number)
    keeps a seeded sampler from drawing the same first point every time.
    """
    seed = None if spec.sampler.seed is None else trial_seed(spec.sampler.seed, seed_offset)
    s = spec.sampler.model_copy(update={"seed": seed})
    if s.name == "tpe":
        # Under Hyperband, TPE still models every bracket's trials (Optuna's bracket view filters only
        # get_trials, and TPE reads _get_trials), so n_startup_trials counts the whole study.
        return optuna.samplers.TPESampler(
            seed=s.seed, n_startup_trials=s.n_startup_trials, multivariate=s.multivariate, constant_liar=True
        )
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    if isinstance(s, GridSampler):
        grid = {name: list(entry.choices) for name, entry in spec.searched().items()}
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=s.n_startup_trials, sigma0=s.sigma0)
    return optuna.samplers.QMCSampler(seed=s.seed, qmc_type=s.qmc_type)


def trial_seed(study_seed: int, offset: int) -> int:
    """A sampler seed for one trial: reproducible, and unrelated between studies with adjacent seeds.

    (``study_seed + offset`` would give seed 1's trial k the draws of seed 0's trial k + 1.)
    """
    return int(np.random.SeedSequence([study_seed % 2**64, offset]).generate_state(1)[0])


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner a spec names; Hyperband's max_resource defaults to the spec's epochs."""
    p = spec.pruner
    if isinstance(p, Hyperband):
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, max_resource=p.max_resource or spec.epochs, reduction_factor=p.reduction_factor
        )
    if isinstance(p, SuccessiveHalving):
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    if isinstance(p, Median):
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps, interval_steps=p.interval_steps
        )
    return optuna.pruners.NopPruner()
