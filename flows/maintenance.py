"""Lake upkeep after a run: few files, bounded snapshot history, no dead files on disk.

Every commit adds a snapshot and, past DuckLake's inlining limit, a small Parquet file. Left
alone, reads would open ever more files and the disk would keep every replaced file forever.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from storage import maintenance as lake

log = logging.getLogger("newsmon.maintenance")


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance pass did."""

    files_merged: int
    snapshots_expired: int
    files_deleted: int
    seconds: float


def maintain(con, retention_days: int, other_writers: bool = False, compact: bool = True,
             compactor: Callable[[], int] | None = None) -> MaintenanceReport:
    """Compact (unless told not to), expire snapshots older than retention_days, delete files nothing refers to.

    `compactor` compacts elsewhere and returns the files merged (a run passes flows/compaction.py's child
    process); without it, `con` compacts."""
    started = time.monotonic()
    merged = (compactor() if compactor else lake.compact(con)) if compact else 0
    expired = lake.expire_snapshots(con, retention_days)
    deleted = lake.delete_unreferenced_files(con, other_writers)
    report = MaintenanceReport(merged, expired, deleted, round(time.monotonic() - started, 3))
    log.info("maintenance: %d files merged, %d snapshots expired, %d files deleted in %.2fs",
             merged, expired, deleted, report.seconds)
    return report


def maintain_shared(con, keys, retention_days: int,
                    compactor: Callable[[], int] | None = None) -> MaintenanceReport | None:
    """Upkeep of a lake several machines write: one of them at a time; the others skip it (None)."""
    if not keys.try_lock("maintenance"):
        log.info("maintenance: already running on another machine, skipped")
        return None
    try:
        return maintain(con, retention_days, other_writers=True, compactor=compactor)
    finally:
        keys.unlock("maintenance")
