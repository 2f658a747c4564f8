"""The worker's trial cache: Optuna's in-process cache of a study's trials (``_CachedStorage``, what
``optuna.load_study`` wraps an RDBStorage in), which can also answer for a running trial that this
process holds whole in memory.

Optuna reads a running trial back in full (six statements: its row, then its parameters, values,
attributes and reports) when a ``Trial`` is built for it and again when it is told its end,
because its cache keeps only finished trials. A worker holds that trial itself: the claim created
it (service/optuna/trials.create_trial), and everything written to it since went through its
``Trial``. ``TrialCache.holding`` answers those two reads from memory: 12 of a trial's 40
statements (benchmarks/coordination.py). Whatever another process changed meanwhile (a stale sweep
that failed the trial) still shows: the state change that ends the trial is checked by the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial


class TrialCache(_CachedStorage):
    """Optuna's trial cache, plus the running trials this process holds (``holding``)."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._held: dict[int, FrozenTrial] = {}  # trial id -> this process's copy of it, while held

    def get_trial(self, trial_id: int) -> FrozenTrial:
        """The held copy of a trial this process holds; otherwise Optuna's cache (or a read)."""
        held = self._held.get(trial_id)
        return held if held is not None else super().get_trial(trial_id)

    @contextmanager
    def holding(self, trial: FrozenTrial) -> Iterator[None]:
        """While open, ``get_trial`` of this trial returns ``trial`` itself (no read)."""
        self._held[trial._trial_id] = trial
        try:
            yield
        finally:
            self._held.pop(trial._trial_id, None)


@contextmanager
def held(storage: BaseStorage, trial: FrozenTrial) -> Iterator[None]:
    """``TrialCache.holding`` on a TrialCache; on any other storage, nothing (it reads as usual)."""
    if not isinstance(storage, TrialCache):
        yield
        return
    with storage.holding(trial):
        yield


def trial_cache(storage: RDBStorage) -> BaseStorage:
    """The storage wrapped in the trial cache, as ``optuna.load_study`` would wrap it in Optuna's."""
    return TrialCache(storage)
