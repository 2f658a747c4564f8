"""One worker child: pick a study, run one trial, repeat, until told to stop or out of work."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import optuna
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, wait_exponential

from service.database import skip_connection_pings
from service.models import StudyRecord, StudyStatus
from service.resilient import TRANSIENT, ResilientRDBStorage
from service.settings import get_settings
from service.spec import StudySpec
from service.storage import build_pruner, build_sampler, get_storage
from service.sweeper import sweep_stale_trials
from worker.objective import TrialObjective, hand_back
from worker.picking import choose, claim_trial, study_status, survey
from worker.progress import child_logging
from worker.runner import run_claimed

log = logging.getLogger("hpo.worker")
SURVEY_SECONDS = 5.0  # how long a child keeps serving one study before looking at all of them again
STATUS_SECONDS = 2.0  # how often a running trial asks whether its study was stopped


@dataclass(frozen=True)
class SlotConfig:
    """What one child runs on and how (picklable: it crosses a spawn)."""

    index: int
    device: str  # "cpu" or "cuda"
    cuda_visible: str | None  # CUDA_VISIBLE_DEVICES for this child, e.g. "1"
    threads: int | None  # torch CPU threads (None: torch's default)
    study: str | None  # serve only this study
    burst: bool  # exit when no work is left
    poll_seconds: float  # wait between looks for work


def child_main(slot: SlotConfig, started: Synchronized | None, limit: int | None, log_queue: Any = None) -> None:
    """Entry point of a spawned child. Exit code 0 means: done on purpose (burst, limit, shutdown).

    ``log_queue``: the parent's queue for log records when it draws progress bars, else None.
    """
    if slot.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible  # before CUDA is first touched
    child_logging(slot.index, log_queue)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM for us
    signal.signal(signal.SIGTERM, lambda *_: _on_sigterm(stop))
    import torch

    if slot.threads:
        torch.set_num_threads(slot.threads)
    Child(slot, stop, started, limit, torch.device(slot.device)).run()


def _on_sigterm(stop: threading.Event) -> None:
    if stop.is_set():
        os._exit(143)  # second signal: stop now; the running trial goes stale and is retried elsewhere
    log.info("shutting down: the running trial stops at its next epoch end and is handed back")
    stop.set()


class Child:
    """The trial loop of one slot."""

    objective_class: type[TrialObjective] = TrialObjective

    def __init__(self, slot: SlotConfig, stop: threading.Event, started: Any, limit: int | None, device: Any) -> None:
        skip_connection_pings()  # before the first engine: every call below is retried instead
        self.slot, self.stop, self.started, self.limit, self.device = slot, stop, started, limit, device
        self.settings = get_settings()
        self.url = self.settings.database_url
        self._studies: dict[tuple[str, int], tuple[StudySpec, optuna.Study]] = {}
        self._last: str | None = None  # the study of the last trial this child ran
        self._surveyed_at = 0.0
        self.identity = f"{socket.gethostname()}:{os.getpid()}"  # the "worker" user attribute of its trials
        # Optuna's in-process trial cache around our storage, as load_study would build it; shared
        # by the claims and every Study, so the cache knows the trials the claims create.
        self._optuna_storage = optuna.storages.get_storage(self._storage())
        self._retrying = Retrying(
            retry=retry_if_exception_type(TRANSIENT),
            wait=wait_exponential(max=30),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    def run(self) -> None:
        """Serve studies until stopped, out of work (burst) or at this worker's trial limit."""
        log.info("worker slot %s on %s serving %s", self.slot.index, self.device, self.slot.study or "all studies")
        while not self.stop.is_set():
            if not self._reserve_one():
                log.info("reached --max-trials; exiting")
                return
            # Stay with the last study while it has work, re-surveying every SURVEY_SECONDS for fairness.
            fresh = self._last is not None and time.monotonic() - self._surveyed_at < SURVEY_SECONDS
            if fresh and self._retrying(self.run_trial, self._last):
                continue
            candidates = self._retrying(survey, self.url, self.slot.study)
            self._surveyed_at = time.monotonic()
            chosen = choose(candidates)
            self._last = chosen.name if chosen is not None and self._retrying(self.run_trial, chosen.name) else None
            if self._last is not None:
                continue
            self._unreserve_one()
            if self.slot.burst and not candidates:
                log.info("no work left (--burst); exiting")
                return
            if any(c.active for c in candidates):  # a dead worker's trial may be stale by now
                self._retrying(sweep_stale_trials, self.url)
            self.stop.wait(self.slot.poll_seconds)

    def run_trial(self, name: str) -> bool:
        """Claim and run one trial of ``name``; False if the study had nothing to start."""
        storage = self._storage()
        claim = claim_trial(self.url, name, self._optuna_storage, {"worker": self.identity})
        if claim is None:
            return False
        spec, study = self._study(claim.record)
        study.sampler = build_sampler(spec, seed_offset=claim.progress.slots_taken)
        objective = self.objective_class(
            spec=spec,
            device=self.device,
            data_dir=self.settings.data_dir,
            cache_dir=self.settings.cache_dir,
            artifact_dir=self.settings.artifact_dir,
            allow_download=self.settings.allow_download,
            should_stop=self.stop.is_set,
            study_stopped=self._stopped_checker(name),
            storage=storage,
            may_be_retry=claim.popped,
        )
        run_claimed(study, claim.trial_id, objective, storage, beat_first=not claim.beat)
        if objective.handed_back and objective.trial_number is not None:
            hand_back(study, objective.trial_number)
        # Re-queue trials of dead workers (at most once per heartbeat interval: see ResilientRDBStorage).
        self._retrying(optuna.storages.fail_stale_trials, study)
        return True

    def _study(self, record: StudyRecord) -> tuple[StudySpec, optuna.Study]:
        """The study's validated spec and Optuna study, loaded once per process."""
        key = (record.name, record.id)
        if key not in self._studies:
            spec = StudySpec.model_validate(record.spec)
            study = optuna.load_study(
                study_name=record.name,
                storage=self._optuna_storage,
                pruner=build_pruner(spec),
                sampler=build_sampler(spec),
            )
            self._studies[key] = (spec, study)
        return self._studies[key]

    def _storage(self) -> ResilientRDBStorage:
        """Optuna's storage on the worker's database, with heartbeats (one per process)."""
        return get_storage(self.url, self.settings.heartbeat_interval, self.settings.heartbeat_grace)

    def _stopped_checker(self, name: str) -> Callable[[], bool]:
        """Whether the study was stopped, asked of the database at most every STATUS_SECONDS."""
        checked = {"at": time.monotonic(), "stopped": False}  # it was running when the trial started

        def stopped() -> bool:
            if time.monotonic() - checked["at"] >= STATUS_SECONDS:
                checked["stopped"] = self._retrying(study_status, self.url, name) == StudyStatus.STOPPED
                checked["at"] = time.monotonic()
            return bool(checked["stopped"])

        return stopped

    def _reserve_one(self) -> bool:
        if self.limit is None:
            return True
        with self.started.get_lock():
            if self.started.value >= self.limit:
                return False
            self.started.value += 1
            return True

    def _unreserve_one(self) -> None:
        if self.limit is not None:
            with self.started.get_lock():
                self.started.value -= 1
