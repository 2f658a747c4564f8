"""The parent process: one spawned child per slot, restarted when it dies; warm then hard shutdown."""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any

from worker.child_process import child_main
from worker.progress import terminal_progress
from worker.release import JOIN_SECONDS, DeadSlotRelease
from worker.signals import RestartPolicy, StopKind, StopRequests
from worker.slots import SlotConfig, TrialQuota

log = logging.getLogger("hpo.worker")
KILLED_EXIT_SECONDS = 5.0  # how long a stop-now waits for each killed child to be gone
HARD_STOP_RELEASE_SECONDS = 10.0  # and for their trials' hand-back (a database that is away: the heartbeat's job)


class Supervisor:
    """Starts the children, restarts crashed ones (logging why), and handles SIGTERM/SIGINT.

    First signal: children finish their current epoch, hand their trial back, and exit.
    Second signal: children are killed at once and their trials handed back for a retry from
    their checkpoints (worker.release), unless it is a SIGTERM right after the first
    (worker.signals: the same request, e.g. to the group).
    A crashed child is restarted after a backoff that does not hold up watching the others, and
    its trial is handed back for a retry at once (worker.release), not a heartbeat grace later.
    """

    def __init__(self, slots: list[SlotConfig], max_trials: int | None, bars: bool = False) -> None:
        self.slots = slots
        self.bars = bars  # a progress bar per slot (on a terminal); else plain log lines
        self.context = mp.get_context("spawn")  # never fork: CUDA must not be initialised in a parent
        self.quota = TrialQuota(self.context, max_trials)  # --max-trials, shared by the children
        self.procs: dict[int, BaseProcess] = {}
        self.started_at: dict[int, float] = {}  # time.monotonic() each slot's child started
        self.restart_at: dict[int, float] = {}  # slots waiting out their backoff, and until when
        self.restarts = RestartPolicy()
        self.release = DeadSlotRelease()
        self.release_wait = JOIN_SECONDS  # how long exiting waits for hand-backs under way
        self.stop_requests = StopRequests()
        self.shutdown = False
        self.log_queue: Any = None  # where children send their log records while the bars are drawn

    def run(self) -> int:
        """Supervise until every child has exited on purpose; returns the process exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            with terminal_progress(self.context, len(self.slots), self.bars) as self.log_queue:
                self._supervise()
        finally:
            self.release.close(self.release_wait)
        log.info("worker exiting")
        return 0

    def _supervise(self) -> None:
        for slot in self.slots:
            self._start(slot)
        while self.procs or (self.restart_at and not self.shutdown):
            time.sleep(0.2)
            for index, proc in list(self.procs.items()):
                if proc.is_alive():
                    continue
                del self.procs[index]
                if proc.exitcode != 0 and proc.pid is not None:
                    self.release.release(index, proc.pid)
                if proc.exitcode != 0 and not self.shutdown:
                    self._schedule_restart(self.slots[index], proc.exitcode)
            now = time.monotonic()
            for index, due in list(self.restart_at.items()):
                if now >= due and not self.shutdown:
                    del self.restart_at[index]
                    self._start(self.slots[index])

    def _start(self, slot: SlotConfig) -> None:
        proc = self.context.Process(
            target=child_main,
            args=(slot, self.quota, self.log_queue),
            name=f"hpo-worker-{slot.index}",
        )
        proc.start()
        self.procs[slot.index] = proc
        self.started_at[slot.index] = time.monotonic()

    def _schedule_restart(self, slot: SlotConfig, exitcode: int | None) -> None:
        reason = f"signal {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exit code {exitcode}"
        delay = self.restarts.delay(slot.index, time.monotonic() - self.started_at[slot.index])
        log.warning(
            "slot %s died (%s); restarting in %ss. Its trial, if any, is handed back for a retry",
            slot.index,
            reason,
            delay,
        )
        self.restart_at[slot.index] = time.monotonic() + delay

    def _on_signal(self, signum: int, _frame: Any) -> None:
        kind = self.stop_requests.receive(signum)
        if kind is StopKind.REPEAT:
            return
        if kind is StopKind.WARM:
            self.shutdown = True
            log.info(
                "%s: finishing current epochs and handing trials back (again to stop at once)",
                signal.Signals(signum).name,
            )
            for proc in self.procs.values():
                if proc.pid is not None and proc.is_alive():
                    proc.terminate()  # SIGTERM: the child's warm shutdown
            return
        log.warning("second signal: stopping now")
        killed = list(self.procs.items())
        for _, proc in killed:
            proc.kill()
        for index, proc in killed:  # their trials are handed back, not left to the heartbeat grace
            proc.join(KILLED_EXIT_SECONDS)
            if proc.pid is not None:
                self.release.release(index, proc.pid)
        self.release_wait = HARD_STOP_RELEASE_SECONDS
        raise SystemExit(1)
