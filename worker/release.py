"""Handing back the trial of a slot that died: the supervisor saw the process go, so its trial
need not wait out the heartbeat grace (HPO_HEARTBEAT_GRACE, 60 s by default) to be retried.

The heartbeat stays the safety net: for a whole worker or machine lost, and for a hand-back
that could not reach the database.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from worker.slots import process_identity

log = logging.getLogger("hpo.worker")
JOIN_SECONDS = 30.0  # how long a worker that is exiting waits for a hand-back under way


class DeadSlotRelease:
    """Fails and re-queues a dead slot process's trials, in a thread (the supervisor keeps
    watching the other slots while the database answers, or retries)."""

    def __init__(self) -> None:
        self._db: Any = None  # service.db.database.Database, built at the first death
        self._db_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def release(self, slot: int, pid: int) -> None:
        """Hand back the trials of slot ``slot``'s process ``pid``, which has exited."""
        thread = threading.Thread(target=self._release, args=(slot, pid), name=f"release-slot-{slot}", daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def close(self, wait: float = JOIN_SECONDS) -> None:
        """Wait for hand-backs under way (up to ``wait`` seconds in all), then close the database's pool."""
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._db is not None:
            self._db.dispose()

    def _release(self, slot: int, pid: int) -> None:
        # Imported at the first death: a worker's parent starts without the database layer.
        from service.db.retry import call_with_retry
        from service.scheduling.sweeper import release_trials_of_dead_worker

        try:
            released = call_with_retry(release_trials_of_dead_worker, self._database(), process_identity(pid))
        except Exception as exc:  # the heartbeat sweep retries the trial later
            log.warning(
                "slot %s: could not hand back its trial (%s: %s); it is retried once its heartbeat goes stale",
                slot,
                type(exc).__name__,
                exc,
            )
            return
        if released:
            log.info("slot %s: handed back trial id(s) %s for a retry from their checkpoint", slot, released)

    def _database(self) -> Any:
        from service.db.database import Database
        from service.settings import get_settings

        with self._db_lock:
            if self._db is None:
                self._db = Database.from_settings(get_settings(), role="supervisor")
            return self._db
