"""newsmon as a library, for notebooks and scripts.

    import newsmon
    con = newsmon.connect("newsmon.toml")       # read-only DuckDB connection, the store attached
    con.sql("SELECT title FROM stories ORDER BY published_at DESC LIMIT 5").show()
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["connect"]


def connect(config: str | Path | None = None):
    """A read-only DuckDB connection with the store of `config` attached as `newsmon` and in use.

    Without `config`, the same file as the CLI: $NEWSMON_CONFIG, else ./newsmon.toml."""
    from flows.config import config_path, load_settings
    from storage.db import open_reader

    settings = load_settings(config_path(str(config) if config is not None else None))
    return open_reader(settings.database, settings.storage.memory_limit, settings.storage.shared)
