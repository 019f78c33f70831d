"""newsmon as a library, for notebooks and scripts.

    import newsmon
    con = newsmon.connect("newsmon.toml")       # read-only DuckDB connection, the store attached
    con.sql("SELECT title FROM stories ORDER BY published_at DESC LIMIT 5").show()
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["connect"]


def connect(config: str | Path = "newsmon.toml"):
    """A read-only DuckDB connection with the store of `config` attached as `newsmon` and in use."""
    from flows.config import load_settings
    from storage.db import open_reader

    settings = load_settings(Path(config))
    return open_reader(settings.database, settings.storage.memory_limit, settings.storage.shared)
