"""Where a store's files live, from the configured `database` path (no database needed to ask)."""
from __future__ import annotations

from pathlib import Path


def store_dir(database: Path) -> Path:
    """The store folder for a configured `database` path: `x.duckdb` -> `x.lake/`."""
    return database.with_suffix(".lake") if database.suffix else database.with_name(database.name + ".lake")
