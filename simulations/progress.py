"""The progress bar of ``swimmesh simulate``: virtual time done of planned, wall time, ETA."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class BarProgress:
    """A rich progress bar on stderr (shown only on a terminal). Parts of a scenario each run
    from virtual time 0; their planned seconds add up to the bar's total."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("virtual {task.completed:>7.1f} / {task.total:.0f} s"),
            TextColumn("wall"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self._task: TaskID | None = None
        self._done = 0.0
        self._total = 0.0
        self._last = 0.0

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def plan(self, virtual_seconds: float, label: str) -> None:
        self._total = virtual_seconds
        self._task = self._bar.add_task(label, total=max(virtual_seconds, 1.0))

    def at(self, virtual_seconds: float) -> None:
        if self._task is not None:
            done = min(self._done + virtual_seconds, self._total)
            self._bar.update(self._task, completed=done)
            self._last = virtual_seconds

    def done_part(self) -> None:
        self._done += self._last
        self._last = 0.0
