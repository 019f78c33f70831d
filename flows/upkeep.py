"""`newsmon maintain` and the sharded flow's last step: lake upkeep once, whoever runs it."""
from __future__ import annotations

from storage.db import open_writer
from storage.lock import writer_lock

from flows.compaction import compactor
from flows.config import Settings
from flows.maintenance import MaintenanceReport, maintain, maintain_shared

MAINTENANCE_LOCK_WAIT_S = 600


def run_maintenance(settings: Settings) -> MaintenanceReport | None:
    """Compact and expire now; None when another machine is already doing it (shared catalog)."""
    shared = settings.storage.shared
    compact_elsewhere = compactor(settings)  # a crash in DuckLake's rewrite ends the child, not this command or flow
    if shared is None:
        # One machine: wait for a run in flight rather than skip (upkeep is rare and short).
        with writer_lock(settings.database, wait_s=MAINTENANCE_LOCK_WAIT_S):
            con = open_writer(settings.database, settings.storage.memory_limit)
            try:
                return maintain(con, settings.storage.snapshot_retention_days, compactor=compact_elsewhere)
            finally:
                con.close()
    from storage.pgkeys import PgKeys

    con = open_writer(settings.database, settings.storage.memory_limit, shared)
    keys = PgKeys(shared.conninfo, "maintenance")
    try:
        return maintain_shared(con, keys, settings.storage.snapshot_retention_days, compactor=compact_elsewhere)
    finally:
        keys.close()
        con.close()
