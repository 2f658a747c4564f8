"""What a stop signal means: warm stop, the same request again, or stop now; and when to restart a slot.

A SIGTERM sent to the whole process group (systemd's default, ``kill -TERM -PGID``) reaches each
child twice: once from the signal, once from its supervisor passing the stop on. Those two are
one request. So a second SIGTERM within ``SAME_REQUEST_SECONDS`` of the first changes nothing;
a later one, or a second Ctrl-C, means stop now.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from enum import Enum

SAME_REQUEST_SECONDS = 3.0
RESTART_BACKOFF = (1, 2, 5, 10, 30)  # seconds before restarting a child that keeps dying
HEALTHY_SECONDS = 60.0  # a child that ran this long before dying starts the backoff afresh


class StopKind(Enum):
    """What one stop signal asks for."""

    WARM = "warm"  # finish the current epoch, hand the trial back, exit
    REPEAT = "repeat"  # the same request again: nothing changes
    NOW = "now"  # stop at once


@dataclass
class StopRequests:
    """Classifies the stop signals one process receives."""

    first_at: float | None = None  # when the first arrived (time.monotonic)

    def receive(self, signum: int, now: float | None = None) -> StopKind:
        """What the signal ``signum`` arriving ``now`` asks for."""
        now = time.monotonic() if now is None else now
        if self.first_at is None:
            self.first_at = now
            return StopKind.WARM
        if signum == signal.SIGTERM and now - self.first_at < SAME_REQUEST_SECONDS:
            return StopKind.REPEAT
        return StopKind.NOW


@dataclass
class RestartPolicy:
    """When to restart each slot's child after it died: backoff grows with repeated crashes and
    starts afresh once a child has run for ``HEALTHY_SECONDS``."""

    crashes: dict[int, int] = field(default_factory=dict)

    def delay(self, index: int, lived_seconds: float) -> float:
        """Seconds to wait before restarting slot ``index``, whose child lived ``lived_seconds``."""
        if lived_seconds >= HEALTHY_SECONDS:
            self.crashes[index] = 0
        crashes = self.crashes.get(index, 0)
        self.crashes[index] = crashes + 1
        return RESTART_BACKOFF[min(crashes, len(RESTART_BACKOFF) - 1)]
