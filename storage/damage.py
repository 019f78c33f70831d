"""Damaged store files, found when the store is opened, before anything is written.

Two kinds of file, two answers (docs/RELIABILITY.md):
- The catalog and the Parquet data files are the truth: newsmon cannot rebuild them. A damaged one
  stops every command that opens the lake with StoreDamaged, whose one line names the file.
- index.sqlite and search/ are derived from the lake: their owners start them over and rebuild them
  (storage/keys.py, flows/persist.py).

The checks are cheap (a few header bytes and a stat per file, no full read), so they catch what a
truncated copy, a torn write or an overwritten file leaves; damage inside a file whose length and
ends are intact is reported by DuckDB or SQLite when the damaged part is read.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PARQUET_MAGIC = b"PAR1"


class StoreDamaged(RuntimeError):
    """A file of the lake (catalog or data file) is damaged; str() names it and what to do."""


def sqlite_damage(path: Path) -> str | None:
    """Why an existing SQLite file cannot be whole (empty, not SQLite, shorter than its header says), or None."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header:
        return "the file is empty"
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        return "not a SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when the change counter matches the version-valid-for number. A WAL beside
    # the file may hold pages a killed checkpoint had not written yet: SQLite recovers them, so skip then.
    valid = header[24:28] == header[92:96]
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size
    if valid and pages and not (wal.exists() and wal.stat().st_size) and size < pages * page_size:
        return f"{size} bytes, its header says {pages * page_size}: truncated"
    return None


def parquet_damage(path: Path, expected_size: int | None) -> str | None:
    """Why a Parquet file the catalog lists cannot be whole (missing, another size, no Parquet magic), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(max(size - 4, 0))
            tail = handle.read(4)
    except FileNotFoundError:
        return "missing"
    if expected_size is not None and size != expected_size:
        return f"{size} bytes, the catalog recorded {expected_size}: truncated or overwritten"
    if head != _PARQUET_MAGIC or tail != _PARQUET_MAGIC:
        return "not a complete Parquet file"
    return None


def check_lake(catalog: Path, data: Path) -> None:
    """Raise StoreDamaged when the catalog or a data file of the current snapshot is damaged.

    A missing catalog beside data files is damage too: starting an empty catalog there would make
    upkeep delete every data file as unknown."""
    if not catalog.exists():
        if data.is_dir() and any(data.rglob("*.parquet")):
            raise StoreDamaged(f"{catalog}: missing, but {data} holds data files. newsmon cannot rebuild a "
                               "catalog: restore it from a backup (a new one would treat every data file as unknown)")
        return
    reason = sqlite_damage(catalog)
    if reason is None:
        try:
            files = current_files(catalog)
        except sqlite3.Error as exc:
            reason = str(exc)
    if reason is not None:
        raise StoreDamaged(f"{catalog}: damaged DuckLake catalog ({reason}). newsmon cannot rebuild it: "
                           "restore the store folder from a backup")
    damaged = {path: why for path, size in files.items() if (why := parquet_damage(path, size))}
    if damaged:
        # Upkeep may have merged and deleted a file since the list was read: only what is still listed counts.
        still = current_files(catalog)
        damaged = {path: why for path, why in damaged.items() if path in still and parquet_damage(path, still[path])}
    if damaged:
        path, why = sorted(damaged.items())[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise StoreDamaged(f"{path}: damaged data file ({why}){more}. newsmon cannot rebuild it: "
                           "restore the store folder from a backup")


def current_files(catalog: Path) -> dict[Path, int | None]:
    """Every data and delete file the catalog's current snapshot reads, with the size it recorded."""
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=10) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'ducklake_metadata'").fetchone():
            raise sqlite3.DatabaseError("not a DuckLake catalog")
        root = Path(con.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'").fetchone()[0])
        schemas = {i: _join(root, p, rel) for i, p, rel in con.execute(
            "SELECT schema_id, path, path_is_relative FROM ducklake_schema WHERE end_snapshot IS NULL")}
        tables = {i: _join(schemas.get(s, root), p, rel) for i, s, p, rel in con.execute(
            "SELECT table_id, schema_id, path, path_is_relative FROM ducklake_table WHERE end_snapshot IS NULL")}
        rows = con.execute("""
            SELECT table_id, path, path_is_relative, file_size_bytes FROM ducklake_data_file WHERE end_snapshot IS NULL
            UNION ALL
            SELECT table_id, path, path_is_relative, file_size_bytes FROM ducklake_delete_file
            WHERE end_snapshot IS NULL""").fetchall()
    con.close()
    return {_join(tables.get(t, root), p, rel): size for t, p, rel, size in rows}


def _join(base: Path, path: str | None, relative) -> Path:
    if not path:
        return base
    return base / path if relative else Path(path)
