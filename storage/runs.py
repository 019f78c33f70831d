"""SQL for the runs table: one row per ingest cycle, with its summary."""
from __future__ import annotations

from datetime import datetime

import duckdb

from .db import LAKE


def start(con: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime, kind: str = "ingest") -> None:
    """Record a run (kind 'ingest', 'import' or 'upgrade') as running."""
    con.execute("INSERT INTO runs (run_id, kind, started_at, status) VALUES (?, ?, ?, 'running')",
                [run_id, kind, started_at])


def fail_interrupted(con: duckdb.DuckDBPyConnection, finished_at: datetime) -> int:
    """Mark runs still 'running' as failed: only the lock holder runs, so they died (killed, disk full)."""
    count = con.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    if count:  # no UPDATE at all otherwise: it would be one more snapshot per run
        con.execute("UPDATE runs SET status = 'failed', finished_at = ? WHERE status = 'running'", [finished_at])
    return count


def finish(con: duckdb.DuckDBPyConnection, run_id: str, status: str, finished_at: datetime, summary: str) -> None:
    """Record how a run ended, its summary JSON and the snapshot that holds its data."""
    # The snapshot read here is the last one with this run's data; this UPDATE makes one more.
    con.execute(f"""UPDATE runs SET finished_at = ?, status = ?, summary = ?,
                       snapshot_id = (SELECT id FROM {LAKE}.current_snapshot())
                    WHERE run_id = ?""", [finished_at, status, summary, run_id])
