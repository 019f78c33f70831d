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


def delete_unreferenced_files(con: duckdb.DuckDBPyConnection, other_writers: bool = False) -> int:
    """Delete data files no remaining snapshot refers to, and files no commit ever registered (written by a
    run whose commit failed, e.g. on a full disk); return how many.

    With other writers (a shared lake), a file no commit registered may be one they are writing right
    now: only those older than a day go."""
    old = con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)").fetchall()
    if other_writers:
        orphaned = con.execute(f"CALL ducklake_delete_orphaned_files('{LAKE}', "
                               "older_than => now() - INTERVAL 1 DAY)").fetchall()
    else:  # the writer lock is held: every file a run wrote is committed by now
        orphaned = con.execute(f"CALL ducklake_delete_orphaned_files('{LAKE}', cleanup_all => true)").fetchall()
    return len(old) + len(orphaned)
