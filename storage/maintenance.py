"""SQL for lake upkeep: compaction, snapshot expiry and removal of unreferenced files."""
from __future__ import annotations

import duckdb

from .db import LAKE


# Files this big are left alone: without a cap, every run's few new rows were merged into the last
# big file, rewriting up to DuckLake's 512 MB target per run (2.3 s instead of 0.4 s at 20k articles).
MERGE_BELOW_BYTES = 32 * 2**20


def compact(con: duckdb.DuckDBPyConnection) -> int:
    """Move small inlined changes into Parquet and merge adjacent small files; return files merged."""
    con.execute(f"CALL ducklake_flush_inlined_data('{LAKE}')")
    merged = con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}', max_file_size => {MERGE_BELOW_BYTES})")
    return sum(r[-1] or 0 for r in merged.fetchall())


def expire_snapshots(con: duckdb.DuckDBPyConnection, retention_days: int) -> int:
    """Forget snapshots older than the retention (time travel stops there); return how many."""
    rows = con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', older_than => now() - INTERVAL (?) DAY)",
                       [retention_days]).fetchall()
    return len(rows)


def delete_unreferenced_files(con: duckdb.DuckDBPyConnection) -> int:
    """Delete data files no remaining snapshot refers to, and files no commit ever registered (written by a
    run whose commit failed, e.g. on a full disk); return how many."""
    old = con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)").fetchall()
    # Safe while the writer lock is held: every file this run wrote is committed by now.
    orphaned = con.execute(f"CALL ducklake_delete_orphaned_files('{LAKE}', cleanup_all => true)").fetchall()
    return len(old) + len(orphaned)
