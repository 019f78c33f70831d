"""SQL for moving a DuckDB file written by newsmon 0.1 (one file, `<database>`) into the lake."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import duckdb

from .articles import ARTICLE_COLUMNS
from .db import LAKE, cursor

# Tables copied as they are; articles go through the store stage (their signatures are recomputed).
COPIED_TABLES = ("feeds", "fetch_log", "alert_queue", "alert_matches", "deliveries", "runs")
_LEGACY = "newsmon_legacy"


def attach(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Attach the old file read-only (outside any transaction)."""
    con.execute(f"ATTACH '{path}' AS {_LEGACY} (READ_ONLY)")


def detach(con: duckdb.DuckDBPyConnection) -> None:
    """Detach the old file."""
    con.execute(f"DETACH {_LEGACY}")


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    return [r[0] for r in con.execute("""SELECT column_name FROM duckdb_columns()
        WHERE database_name = ? AND schema_name = 'main' AND table_name = ? ORDER BY column_index""",
                                      [database, table]).fetchall()]


def copy_table(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Copy the columns both versions have; runs of 0.1 become kind 'ingest'. Returns rows copied."""
    old = _columns(con, _LEGACY, table)
    if not old:
        return 0
    shared = [c for c in _columns(con, LAKE, table) if c in old]
    names = ", ".join(f'"{c}"' for c in shared)
    if table == "runs":
        con.execute(f"INSERT INTO runs ({names}, kind) SELECT {names}, 'ingest' FROM {_LEGACY}.main.runs")
    else:
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {_LEGACY}.main.{table}")
    return con.execute(f"SELECT count(*) FROM {_LEGACY}.main.{table}").fetchone()[0]


def articles(con: duckdb.DuckDBPyConnection, batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
    """The old file's articles as row dicts with ARTICLE_COLUMNS' keys (signature left None), by seq."""
    old = set(_columns(con, _LEGACY, "articles"))
    select = ", ".join(f'"{c}"' if c in old and c != "signature" else f'NULL AS "{c}"' for c in ARTICLE_COLUMNS)
    # A cursor of its own: the caller writes on `con` between batches, which would end this result.
    result = cursor(con).execute(f"SELECT {select} FROM {_LEGACY}.main.articles ORDER BY seq")
    names = list(ARTICLE_COLUMNS)
    while rows := result.fetchmany(batch):
        yield [dict(zip(names, r)) for r in rows]


def upgrades_done(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    """True when an upgrade from `source` has committed (a crash before the old file was renamed)."""
    return con.execute("""SELECT count(*) FROM runs WHERE kind = 'upgrade' AND status = 'completed'
                          AND json_extract_string(summary, '$.source') = ?""", [source]).fetchone()[0] > 0


def record_upgrade(con: duckdb.DuckDBPyConnection, run_id: str, started_at, summary: str) -> None:
    """The runs row of an upgrade, written in the upgrade's own transaction."""
    con.execute("""INSERT INTO runs (run_id, kind, started_at, finished_at, status, summary)
                   VALUES (?, 'upgrade', ?, now(), 'completed', ?)""", [run_id, started_at, summary])
