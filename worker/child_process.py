"""The entry point of one slot's child process: environment, logging, signals, then the loop."""

from __future__ import annotations

import logging
import os
import signal
import threading
import warnings
from typing import Any

import optuna

from service.db.database import Database
from service.settings import get_settings
from worker.progress import child_logging
from worker.signals import StopKind, StopRequests
from worker.slot_loop import SlotLoop
from worker.slots import SlotConfig, TrialQuota

log = logging.getLogger("hpo.worker")


def child_main(slot: SlotConfig, quota: TrialQuota, log_queue: Any = None) -> None:
    """Run one slot until it is done on purpose (burst, quota, shutdown): then exit code 0.

    ``log_queue``: the parent's queue for log records when it draws progress bars, else None.
    """
    if slot.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible  # before CUDA is first touched
    child_logging(slot.index, log_queue)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM for us
    requests = StopRequests()
    signal.signal(signal.SIGTERM, lambda signum, _: _on_sigterm(stop, requests.receive(signum)))
    import torch

    if slot.threads:
        torch.set_num_threads(slot.threads)
    settings = get_settings()
    database = Database.from_settings(settings, role="worker")  # one pooled connection (service.db.database)
    try:
        SlotLoop(slot, database, settings, stop, quota, torch.device(slot.device)).run()
    finally:
        database.dispose()


def _on_sigterm(stop: threading.Event, kind: StopKind) -> None:
    if kind is StopKind.REPEAT:  # the group's SIGTERM and the supervisor's: one request
        return
    if kind is StopKind.NOW:
        os._exit(143)  # a later signal: stop now; the running trial goes stale and is retried elsewhere
    log.info("shutting down: the running trial stops at its next epoch end and is handed back")
    stop.set()
