"""SQL for lake upkeep: compaction, snapshot expiry and removal of unreferenced files."""
from __future__ import annotations

import duckdb

from .db import LAKE


# Files this big are left alone: without a cap, every run's few new rows were merged into the last
# big file, rewriting up to DuckLake's 512 MB target per run (2.3 s instead of 0.4 s at 20k articles).
MERGE_BELOW_BYTES = 32 * 2**20


def compact(con: duckdb.DuckDBPyConnection) -> int:
    """Merge adjacent small files, then move small inlined changes into Parquet; return files merged.

    Merging first is deliberate: a merge committed right after a flush let a concurrent reader see an
    empty table for one query (DuckLake d8a1881e, SQLite catalog: 8 of 12 trials; merge first: 0 of 12,
    tests/test_concurrent_readers.py). The files a flush writes are merged by the next run's upkeep."""
    # Each result is read to the end, so each call has committed before the next one starts.
    merged = con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}', max_file_size => {MERGE_BELOW_BYTES})")
    files = sum(row[2] or 0 for row in merged.fetchall())  # files_processed: the small files merged away
    con.execute(f"CALL ducklake_flush_inlined_data('{LAKE}')").fetchall()
    return files


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
