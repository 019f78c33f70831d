"""Small helpers shared by the flow tests: run a flow in-process, read a published database."""
from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb


def run_flow(config: str):
    """One ingest cycle through the real Prefect flow; returns its RunSummary."""
    from flows.ingest import ingest_flow

    return asyncio.run(ingest_flow(config))


def run_digest(config: str) -> dict:
    """One run of the digest flow."""
    from flows.digest import digest_flow

    return asyncio.run(digest_flow(config))


def query(db_path: Path | str, sql: str, params=()) -> list[tuple]:
    """Rows of a read-only query on a published database."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()
