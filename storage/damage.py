"""Damaged store files, found when the store is opened, before anything is written.

Two kinds of file, two answers (docs/RELIABILITY.md):
- The catalog and the Parquet data files are the truth: newsmon cannot rebuild them. A damaged one
  stops every command that opens the lake with StoreDamaged, whose one line names the file
  (storage/db.py runs the checks: before the catalog is attached, then through the attached lake).
- index.sqlite and search/ are derived from the lake: their owners start them over and rebuild them
  (storage/keys.py, flows/persist.py).

The checks are cheap (a stat and 8 bytes per data file, a few catalog reads), so they catch what a
truncated copy, a torn write or an overwritten file leaves; damage inside a file whose length and
ends are intact is reported by DuckDB or SQLite when the damaged part is read.

The catalog is only ever read through DuckDB's own SQLite: a second SQLite library in the process
(Python's sqlite3) would drop DuckDB's locks on the file each time it closed it (POSIX locks belong
to the process), and could reset the WAL index under a session's feet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PARQUET_MAGIC = b"PAR1"
_RESTORE = "newsmon cannot rebuild it: restore the store folder from a backup"


class StoreDamaged(RuntimeError):
    """A file of the lake (catalog or data file) is damaged; str() names it and what to do."""


def damaged_catalog(catalog: Path, reason: str) -> StoreDamaged:
    """The error for a damaged catalog."""
    return StoreDamaged(f"{catalog}: damaged DuckLake catalog ({reason}). {_RESTORE}")


def check_catalog_presence(catalog: Path, data: Path) -> None:
    """Before attaching (stat only): an empty catalog, or none beside data files, is damage.

    DuckLake would start a new, empty lake in either, and upkeep would then delete every data file as
    one the catalog does not know."""
    if not catalog.exists():
        if data.is_dir() and any(data.rglob("*.parquet")):
            raise StoreDamaged(f"{catalog}: missing, but {data} holds data files. newsmon cannot rebuild a "
                               "catalog: restore it from a backup (a new one would treat every data file as unknown)")
    elif catalog.stat().st_size == 0:
        raise damaged_catalog(catalog, "the file is empty")


def truncation(path: Path, pages: int, page_size: int) -> str | None:
    """Why a SQLite file is shorter than the pages it holds, or None. With a WAL beside it, pages may be
    there instead (SQLite recovers them): no verdict then."""
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        return None
    size = path.stat().st_size
    return f"{size} bytes, it holds {pages * page_size}: truncated" if size < pages * page_size else None


def sqlite_damage(path: Path) -> str | None:
    """Why an existing SQLite file cannot be whole (empty, not SQLite, shorter than its header says), or None.

    Reads the header with a plain file read: for files only Python's sqlite3 opens (index.sqlite)."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header:
        return "the file is empty"
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        return "not a SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    # The page count is valid only when the change counter matches the version-valid-for number.
    pages = int.from_bytes(header[28:32], "big") if header[24:28] == header[92:96] else 0
    return truncation(path, pages, 65536 if page_size == 1 else page_size)


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


def check_data_files(files: Mapping[Path, int | None], relist: Callable[[], Mapping[Path, int | None]]) -> None:
    """Raise StoreDamaged naming the first damaged file of `files` (path -> size the catalog recorded).

    Upkeep may merge and delete a file between the listing and the look: `relist` reads the catalog
    again, and only files it still lists count."""
    damaged = {path for path, size in files.items() if parquet_damage(path, size)}
    if damaged:
        still = relist()
        damaged = {path: why for path in damaged if path in still and (why := parquet_damage(path, still[path]))}
    if damaged:
        path, why = sorted(damaged.items())[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise StoreDamaged(f"{path}: damaged data file ({why}){more}. {_RESTORE}")
