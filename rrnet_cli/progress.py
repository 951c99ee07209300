"""Progress display for long steps: a Rich bar on a terminal, silence otherwise.

Library functions take a ``Steps`` and call ``steps.step(...)``; the CLI decides
whether it shows anything (only when stderr is a terminal and ``--json`` is off),
so scripts and pipes see no control characters.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    """A sequence of named steps, each optionally with a known amount of work."""

    def __init__(self, enabled: bool = False, console: Console | None = None) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
                transient=True,  # leave the summary, not a wall of finished bars
            )

    @classmethod
    def for_terminal(cls, quiet: bool = False) -> Steps:
        """Show progress only when a person is watching stderr."""
        return cls(enabled=not quiet and sys.stderr.isatty())

    def __enter__(self) -> Steps:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextlib.contextmanager
    def step(
        self, description: str, total: float | None = None
    ) -> Iterator[Callable[[float], None]]:
        """Show one step; yield ``advance(n)``. Completes the bar when the step ends."""
        if self._progress is None:
            yield lambda _n: None
            return
        task = self._progress.add_task(description, total=total)
        try:
            yield lambda n: self._progress.advance(task, n) if self._progress else None
        finally:
            current = self._progress.tasks[task]
            self._progress.update(task, total=current.total or 1, completed=current.total or 1)


QUIET = Steps(enabled=False)
