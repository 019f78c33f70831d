"""SQL for reading Parquet archives to import (JSON Lines are read by ingest/archive.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import duckdb

REQUIRED = ("url", "text")
KNOWN = ("url", "text", "title", "published_at", "language", "author", "feed_url")


class UnreadableFile(ValueError):
    """A file that cannot be imported at all (not Parquet, a required column missing)."""


def parquet_batches(path: Path, batch: int = 2000) -> Iterator[Any]:
    """Arrow record batches of about `batch` rows holding the known columns of a Parquet file.

    Batches, not Python rows: turning values into Python objects is left to the import's worker
    processes (ingest.archive.batch_records), so this process only moves Arrow buffers."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        try:
            columns = [r[0] for r in con.execute("SELECT name FROM parquet_schema(?)", [str(path)]).fetchall()]
        except duckdb.Error as exc:
            raise UnreadableFile(f"not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise UnreadableFile(f"required column(s) missing: {', '.join(missing)}")
        present = [c for c in KNOWN if c in columns]
        select = ", ".join(f'"{c}"' for c in present)
        yield from con.execute(f"SELECT {select} FROM read_parquet(?)", [str(path)]).to_arrow_reader(batch)
    finally:
        con.close()


def parquet_rows(path: Path) -> int:
    """Number of rows in a Parquet file (from its footer)."""
    con = duckdb.connect()
    try:
        return con.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(path)]).fetchone()[0] or 0
    except duckdb.Error:
        return 0
    finally:
        con.close()
