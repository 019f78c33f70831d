"""SQL for the runs table: one row per ingest cycle, with its summary."""
from __future__ import annotations

from datetime import datetime

import duckdb


def start(con: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime) -> None:
    """Record a run as running."""
    con.execute("INSERT INTO runs (run_id, started_at, status) VALUES (?, ?, 'running')", [run_id, started_at])


def finish(con: duckdb.DuckDBPyConnection, run_id: str, status: str, finished_at: datetime, summary: str) -> None:
    """Record how a run ended and its summary JSON."""
    con.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE run_id = ?",
                [finished_at, status, summary, run_id])
