"""On a terminal: one progress bar per slot, with every log line printed above the bars.

Children cannot draw on the terminal themselves (their output would tear the bars), so on a
terminal each child sends its log records to the parent through a queue
(``logging.handlers.QueueHandler``). The parent draws the bars with rich and prints the
records above them; a record that carries ``extra={"progress": ...}`` (trial start and epoch
end, see worker.objective) moves its slot's bar, and epoch records move the bar only. Off a
terminal nothing changes: every process logs plain lines to stderr.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

CHILD_FORMAT = "%(asctime)s [slot {slot} pid %(process)d] %(message)s"


def child_logging(slot: int, queue: Any | None) -> None:
    """A child's logging: plain lines to stderr, or records to the parent's queue on a terminal."""
    if queue is None:
        logging.basicConfig(level=logging.INFO, format=CHILD_FORMAT.format(slot=slot))
        return
    handler = logging.handlers.QueueHandler(queue)
    handler.setFormatter(logging.Formatter(f"[slot {slot}] %(message)s"))
    handler.addFilter(_SlotStamp(slot))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class _SlotStamp(logging.Filter):
    def __init__(self, slot: int) -> None:
        super().__init__()
        self.slot = slot

    def filter(self, record: logging.LogRecord) -> bool:
        record.slot = self.slot
        return True


def progress_extra(kind: str, study: str, trial: int, epoch: int, epochs: int, val: float | None = None) -> Any:
    """``extra=`` for a log call that moves its slot's bar; ``kind`` is "start" or "epoch" (not printed)."""
    return {"progress": {"kind": kind, "study": study, "trial": trial, "epoch": epoch, "epochs": epochs, "val": val}}


class SlotBars(logging.Handler):
    """The parent's side: a rich Progress with a bar per slot, fed by the children's records."""

    def __init__(self, slots: int, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[val]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.tasks: dict[int, TaskID] = {
            slot: self.progress.add_task(f"slot {slot}: waiting for work", total=None, val="") for slot in range(slots)
        }
        self.lines = RichHandler(console=self.console, show_path=False, show_level=False)

    def __enter__(self) -> SlotBars:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def emit(self, record: logging.LogRecord) -> None:
        """Move the record's slot bar if it carries progress; print it unless it is an epoch line."""
        progress = getattr(record, "progress", None)
        slot = getattr(record, "slot", None)
        if progress is not None and slot in self.tasks:
            val = progress["val"]
            fields = {
                "description": f"slot {slot}: {progress['study']} trial {progress['trial']}",
                "completed": progress["epoch"],
                "total": progress["epochs"],
                "val": "" if val is None else f"val {val:.4f}",
            }
            if progress["kind"] == "epoch":
                self.progress.update(self.tasks[slot], **fields)
                return  # the bar shows it; no line
            self.progress.reset(self.tasks[slot], **fields)  # a new trial: its clock starts now
        self.lines.handle(record)


@contextmanager
def terminal_progress(context: Any, slots: int, enabled: bool) -> Iterator[Any | None]:
    """While open: the bars, and the queue children log to (None when ``enabled`` is false)."""
    if not enabled:
        yield None
        return
    queue = context.Queue()
    root = logging.getLogger()
    saved = root.handlers[:]
    with SlotBars(slots) as bars:
        root.handlers[:] = [bars.lines]  # the parent's own lines print above the bars too
        listener = logging.handlers.QueueListener(queue, bars)
        listener.start()
        try:
            yield queue
        finally:
            listener.stop()
            root.handlers[:] = saved
