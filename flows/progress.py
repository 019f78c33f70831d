"""A progress bar for page downloads when a person is watching, nothing otherwise."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class RichProgress:
    """Page-download progress on the terminal (rich, which Prefect already depends on)."""

    def __init__(self, label: str = "pages") -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._label = label
        self._bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             transient=True)
        self._task = None

    def start(self, total: int | None) -> None:
        """Show the bar for `total` items (None: unknown, a counter only)."""
        self._bar.start()
        self._task = self._bar.add_task(self._label, total=total)

    def advance(self, done: int) -> None:
        """Count `done` more pages."""
        if self._task is not None:
            self._bar.advance(self._task, done)

    def stop(self) -> None:
        """Remove the bar."""
        self._bar.stop()


@contextmanager
def terminal_progress(label: str = "pages") -> Iterator[RichProgress | None]:
    """A RichProgress when stderr is a terminal; None (plain log lines only) in logs, cron and CI."""
    if not sys.stderr.isatty():
        yield None
        return
    progress = RichProgress(label)
    try:
        yield progress
    finally:
        progress.stop()
