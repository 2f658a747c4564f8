"""One worker slot's loop: pick a study, claim a trial, run it, repeat, until stopped or out of work."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import ValidationError

from objectives.gpu_failures import GpuFailure
from service.artifacts import prune_unpinned_weights, study_artifact_dir, weights_files
from service.db.database import Database
from service.db.models import StudyRecord, StudyStatus
from service.db.retry import call_with_retry
from service.optuna.tables import WORKER_ATTR
from service.optuna.trial_cache import trial_cache
from service.scheduling.failures import record_trial_outcome
from service.scheduling.stopping import check_stop_rules_of, has_stop_rules
from service.scheduling.sweeper import sweep_stale_trials
from service.scheduling.trial_events import study_spec, trial_ended
from service.settings import Settings
from service.spec.schema import StudySpec
from service.spec.strategy import build_pruner, build_sampler
from service.studies.lifecycle import study_status
from worker.claims import Claim, claim_trial
from worker.objective import TrialObjective, hand_back
from worker.runner import ProcessPoisoned, run_claimed
from worker.slots import SlotConfig, TrialQuota, process_identity
from worker.study_choice import choose, survey

log = logging.getLogger("hpo.worker")
# None: the row is gone. COMPLETED: a stopping rule completed it (a spent budget leaves no trial running).
STOPPED_OR_GONE = (StudyStatus.STOPPED, StudyStatus.COMPLETED, StudyStatus.DELETING, None)
SURVEY_SECONDS = 5.0  # how long a slot keeps serving one study before looking at all of them again
STATUS_SECONDS = 2.0  # how often a running trial asks whether its study was stopped


class SlotLoop:
    """The trial loop of one slot.

    Database calls are retried across a database restart (service.db.retry); training never
    is: a trial that fails ends as FAIL, and one whose process dies is retried by its lineage.
    """

    objective_class: type[TrialObjective] = TrialObjective  # benchmarks swap in a zero-cost objective

    def __init__(
        self, slot: SlotConfig, db: Database, settings: Settings, stop: threading.Event, quota: TrialQuota, device: Any
    ) -> None:
        self.slot, self.db, self.settings, self.stop, self.quota, self.device = slot, db, settings, stop, quota, device
        # Optuna's in-process trial cache around the storage, shared by the claims and every Study,
        # so that the cache knows the trials the claims create.
        self.storage = trial_cache(call_with_retry(lambda: db.storage))  # building it connects: retried
        self.identity = process_identity(os.getpid())  # the "worker" user attribute of its trials
        self._loaded: dict[tuple[str, int], tuple[StudySpec, optuna.Study]] = {}  # by study name and record id
        self._last_study: str | None = None  # the study of the last trial this slot ran
        self._surveyed_at = 0.0

    def run(self) -> None:
        """Serve studies until stopped, out of work (burst) or out of this worker's trial quota."""
        log.info("worker slot %s on %s serving %s", self.slot.index, self.device, self.slot.study or "all studies")
        while not self.stop.is_set():
            if not self.quota.take():
                log.info("reached --max-trials; exiting")
                return
            # Stay with the last study while it has work, re-surveying every SURVEY_SECONDS for fairness.
            last = self._last_study
            if last is not None and time.monotonic() - self._surveyed_at < SURVEY_SECONDS and self.run_trial(last):
                continue
            candidates = call_with_retry(survey, self.db, self.slot.study)
            self._surveyed_at = time.monotonic()
            chosen = choose(candidates)
            self._last_study = chosen.name if chosen is not None and self.run_trial(chosen.name) else None
            if self._last_study is not None:
                continue
            self.quota.give_back()
            if self.slot.burst and not candidates:
                log.info("no work left (--burst); exiting")
                return
            if any(c.active for c in candidates):  # a dead worker's trial may be stale by now
                call_with_retry(sweep_stale_trials, self.db)
            self.stop.wait(self.slot.poll_seconds)

    def run_trial(self, name: str) -> bool:
        """Claim and run one trial of ``name``; False if the study had nothing to start, or went.

        A fault that concerns this trial alone (a spec this version cannot read, the study
        deleted while the trial ran) fails or drops the trial; the slot goes on serving.
        """
        claim = call_with_retry(claim_trial, self.db, name, self.storage, {WORKER_ATTR: self.identity})
        if claim is None:
            return False
        try:
            self._run_claimed(claim)
        except KeyError:  # Optuna's answer for a study or trial that is not there
            if call_with_retry(self._optuna_study_exists, name):
                raise
            log.warning("study %s was deleted while its trial ran; the trial went with it", name)
            self._loaded.pop((claim.record.name, claim.record.id), None)
            return False
        return True

    def _run_claimed(self, claim: Claim) -> None:
        try:
            spec, study = self._study(claim.record)
        except ValidationError as exc:  # e.g. a spec written by another version of the service
            log.warning("study %s: its spec does not validate here; failing the trial", claim.record.name)
            failing = optuna.load_study(study_name=claim.record.name, storage=self.storage)
            outcome = run_claimed(failing, claim.trial_id, _raise(exc), self.db.storage, claim.first_beat_committed)
            self._count(claim.record.name, claim.trial_id, outcome.error, _failure_limit(claim.record.spec))
            return
        study.sampler = build_sampler(spec, seed_offset=claim.budget.slots_taken)
        study_dir = study_artifact_dir(self.settings.artifact_dir, claim.record.id, claim.record.created_at)
        objective = self.objective_class(
            spec=spec,
            device=self.device,
            data_dir=self.settings.data_dir,
            cache_dir=self.settings.cache_dir,
            checkpoint_dir=study_dir,
            artifact_dir=self.settings.artifact_dir.resolve(),
            allow_download=self.settings.allow_download,
            should_stop=self.stop.is_set,
            study_stopped=self._stopped_checker(claim.record.name),
            storage=self.db.storage,
            may_be_retry=claim.from_waiting_queue,
        )
        outcome = run_claimed(
            study, claim.trial_id, objective, self.db.storage, claim.first_beat_committed, claim.created
        )
        if objective.handed_back:
            handed = call_with_retry(self.storage.get_trial, claim.trial_id)  # this trial alone, not the study
            call_with_retry(hand_back, study, handed, self.db)
        else:
            self._count(claim.record.name, claim.trial_id, outcome.error, spec.max_failed_trials)
        if outcome.gpu_failure is GpuFailure.POISONS_PROCESS:  # told FAIL (and counted) already
            raise ProcessPoisoned(
                f"trial {claim.trial_id} broke this process's CUDA context ({outcome.error}); "
                "exiting so that the supervisor starts the slot afresh"
            )
        # Told and final: a FAIL may yet be retried. A trial its study's stop ended keeps its checkpoint.
        if outcome.state == TrialState.COMPLETE or (outcome.state == TrialState.PRUNED and not objective.stopped):
            objective.discard_checkpoints()
        if outcome.state == TrialState.COMPLETE and self.settings.keep_weights is not None:
            call_with_retry(self._keep_best_weights, study, study_dir, self.settings.keep_weights)
        # Re-queue trials of dead workers (at most once per heartbeat interval: see TunedRDBStorage).
        call_with_retry(optuna.storages.fail_stale_trials, study)

    def _keep_best_weights(self, study: optuna.Study, study_dir: Path, keep: int) -> None:
        """HPO_KEEP_WEIGHTS: delete the final weights of all but the study's ``keep`` best trials."""
        storage = self.db.storage
        study_id = storage.get_study_id_from_name(study.study_name)

        def value_of(number: int) -> float | None:
            trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, number))
            return trial.value if trial.state == TrialState.COMPLETE else None

        # Read before the session opens: a worker's pool has one connection, and the storage needs it.
        values = {number: value_of(number) for number in weights_files(study_dir)}
        with self.db.session() as session:
            removed = prune_unpinned_weights(
                session, study.study_name, study_dir, keep, values, self.settings.artifact_dir
            )
        if removed:
            log.info(
                "study %s: removed the weights of trials %s (HPO_KEEP_WEIGHTS=%s)", study.study_name, removed, keep
            )

    def _count(self, name: str, trial_id: int, error: str | None, limit: int) -> None:
        """Tell the failure guard how the trial ended (service/scheduling/failures.py), write the
        events it raises (service/scheduling/trial_events.py) and check the study's stopping rules
        (service/scheduling/stopping.py), in one transaction. The study's row is locked only to
        check stopping rules, where it has some: a lock at every trial's end would queue the
        other slots' claims (the study lock is that row's) behind this transaction."""

        def record() -> tuple[str | None, str | None]:
            with self.db.session() as session:
                spec = study_spec(session, name)
                trial_ended(session, name, trial_id, error, spec)
                paused = record_trial_outcome(session, name, error=error, limit=limit)
                return paused, check_stop_rules_of(session, name) if has_stop_rules(spec) else None

        paused, completed = call_with_retry(record)
        if paused is not None:
            log.warning("study %s %s", name, paused)
        if completed is not None:
            log.info("study %s completed: %s", name, completed)

    def _optuna_study_exists(self, name: str) -> bool:
        return name in optuna.get_all_study_names(self.db.storage)

    def _study(self, record: StudyRecord) -> tuple[StudySpec, optuna.Study]:
        """The study's validated spec and Optuna study, loaded once per process."""
        key = (record.name, record.id)
        if key not in self._loaded:
            spec = StudySpec.model_validate(record.spec)
            study = optuna.load_study(
                study_name=record.name, storage=self.storage, pruner=build_pruner(spec), sampler=build_sampler(spec)
            )
            self._loaded[key] = (spec, study)
        return self._loaded[key]

    def _stopped_checker(self, name: str) -> Callable[[], bool]:
        """Whether the study was stopped (or deleted), asked of the database at most every STATUS_SECONDS."""
        checked = {"at": time.monotonic(), "stopped": False}  # it was running when the trial started

        def stopped() -> bool:
            if time.monotonic() - checked["at"] >= STATUS_SECONDS:
                checked["stopped"] = call_with_retry(self._status, name) in STOPPED_OR_GONE
                checked["at"] = time.monotonic()
            return bool(checked["stopped"])

        return stopped

    def _status(self, name: str) -> str | None:
        with self.db.session() as session:
            return study_status(session=session, name=name)


def _raise(exc: Exception) -> Callable[[optuna.Trial], float]:
    """An objective that fails with ``exc`` (so the trial ends FAIL with it as the reason)."""

    def objective(_: optuna.Trial) -> float:
        raise exc

    return objective


def _failure_limit(raw_spec: dict[str, Any]) -> int:
    """The spec's max_failed_trials, read without validating the spec (which failed)."""
    limit = raw_spec.get("max_failed_trials")
    return limit if isinstance(limit, int) and limit >= 1 else StudySpec.model_fields["max_failed_trials"].default
