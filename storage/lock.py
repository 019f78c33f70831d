"""One writer at a time: an advisory file lock beside the database.

The kernel drops the lock when its process dies (even on SIGKILL), so a crashed run never
leaves a stale lock behind, whatever started the run (CLI, `newsmon serve`, a Prefect worker, cron).
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .db import store_dir


class RunInProgress(RuntimeError):
    """Another newsmon process is writing this database."""


def lock_path(database: Path) -> Path:
    """The lock file of a store."""
    return store_dir(database) / "writer.lock"


@contextmanager
def writer_lock(database: Path, wait_s: float = 0.0,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the database's writer lock; wait up to wait_s for it, then raise RunInProgress.

    `on_wait` is told once, with who holds the lock, when the lock is taken and wait_s > 0."""
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_s
        attempts = 0
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                attempts += 1
                if time.monotonic() >= deadline:
                    raise RunInProgress(_holder(handle, database)) from None
                if attempts == 1 and on_wait is not None:
                    on_wait(_holder(handle, database))
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _holder(handle, database: Path) -> str:
    handle.seek(0)
    return f"another newsmon run (pid {handle.read().strip() or 'unknown'}) is writing {store_dir(database)}"
