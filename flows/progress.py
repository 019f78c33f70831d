"""A progress bar for page downloads when a person is watching, nothing otherwise."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


class RichProgress:
    """Page-download progress on the terminal (rich, which Prefect already depends on)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("pages"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             transient=True)
        self._task = None

    def start(self, total: int) -> None:
        """Show the bar for `total` pages."""
        self._bar.start()
        self._task = self._bar.add_task("pages", total=total)

    def advance(self, done: int) -> None:
        """Count `done` more pages."""
        if self._task is not None:
            self._bar.advance(self._task, done)

    def stop(self) -> None:
        """Remove the bar."""
        self._bar.stop()


@contextmanager
def terminal_progress() -> Iterator[RichProgress | None]:
    """A RichProgress when stderr is a terminal; None (plain log lines only) in logs, cron and CI."""
    if not sys.stderr.isatty():
        yield None
        return
    progress = RichProgress()
    try:
        yield progress
    finally:
        progress.stop()
