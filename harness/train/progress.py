"""Progress bar and Ctrl-C handling for the training loop."""

from __future__ import annotations

import os
import signal
from typing import Any, Callable


class ProgressBar:
    """Rich progress bar with the current loss; HARNESS_PROGRESS=0 or progress=False hides it."""

    def __init__(self, enabled: bool, total: int, done: int):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[val]}"),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                          disable=not enabled or os.environ.get("HARNESS_PROGRESS") == "0")
        self.task = self.p.add_task("train", total=total, completed=done, loss="-", val="")

    def __enter__(self) -> "ProgressBar":
        self.p.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self.p.__exit__(*exc)

    def update(self, step: int, loss: float, val: float | None) -> None:
        """Show optimizer step `step` done with its loss (and the last validation loss)."""
        fields = {"loss": f"{loss:.4f}"}
        if val is not None:
            fields["val"] = f"val {val:.4f}"
        self.p.update(self.task, completed=step, **fields)


class Interrupts:
    """The first Ctrl-C sets a flag that the loop checks between micro-batches, where the
    state is exactly that of the last optimizer step and a checkpoint can be written; a
    second Ctrl-C interrupts at once. Outside the main thread signals cannot be caught and
    Ctrl-C raises wherever it lands (the loop still checkpoints when that is safe)."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.hit = False
        self.previous = None

    def __enter__(self) -> "Interrupts":
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def _handler(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        self.log("interrupt: stopping after this batch with a checkpoint (Ctrl-C again to stop now)")

    def check(self) -> None:
        """Raise KeyboardInterrupt when Ctrl-C was pressed since the loop last looked."""
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
