"""Small helpers shared by the flow tests: run a flow in-process, read a store."""
from __future__ import annotations

import asyncio
from pathlib import Path


def run_flow(config: str):
    """One ingest cycle through the real Prefect flow; returns its RunSummary."""
    from flows.ingest import ingest_flow

    return asyncio.run(ingest_flow(config))


def run_digest(config: str) -> dict:
    """One run of the digest flow."""
    from flows.digest import digest_flow

    return asyncio.run(digest_flow(config))


def query(db_path: Path | str, sql: str, params=()) -> list[tuple]:
    """Rows of a read-only query on the store of a configured database path."""
    from storage.db import open_reader

    con = open_reader(Path(db_path))
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()
