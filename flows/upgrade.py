"""Move a DuckDB file written by newsmon 0.1 into the lake, once, on the first run that finds it.

0.1 wrote `<database>.work` and published copies at `<database>`; the working file is the newer
one. Everything is copied in one lake commit (a killed upgrade leaves the lake as it was), the
MinHash signatures are recomputed with the current scheme, and the old file is then renamed
`<file>.migrated`, never deleted.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path

from ingest.dedup import signature
from storage import articles as article_store
from storage import upgrade as legacy
from storage.db import store_dir, transaction

from flows.config import Settings
from flows.persist import Store, catch_up_index

MIGRATED_SUFFIX = ".migrated"


def legacy_files(database: Path) -> list[Path]:
    """The 0.1 files beside the configured database path, the newest (working) one first."""
    work = database.with_name(database.name + ".work")
    return [p for p in (work, database) if p.is_file()]


def upgrade_legacy(store: Store, settings: Settings, logger) -> str | None:
    """Upgrade from an old DuckDB file if there is one; return what was done, for the run summary."""
    files = legacy_files(settings.database)
    if not files:
        return None
    source = files[0]
    if not legacy.upgrades_done(store.con, str(source)):
        counts = _copy(store, source, settings)
        catch_up_index(store, settings.dedup)
        message = (f"moved {counts['articles']} articles and {counts['other_rows']} other rows from {source} "
                   f"into {store_dir(settings.database)}")
    else:
        message = f"{source} was already moved into {store_dir(settings.database)}"
    for path in files:
        path.rename(path.with_name(path.name + MIGRATED_SUFFIX))
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
    message += f"; the old file is kept as {source.name}{MIGRATED_SUFFIX}"
    logger.warning("upgrade: %s", message)
    return message


def _copy(store: Store, source: Path, settings: Settings) -> dict:
    con = store.con
    legacy.attach(con, source)
    started = datetime.now(timezone.utc)
    counts = {"source": str(source), "articles": 0, "other_rows": 0}
    try:
        with transaction(con):
            for table in legacy.COPIED_TABLES:
                counts["other_rows"] += legacy.copy_table(con, table)
            for rows in legacy.articles(con):
                for row in rows:
                    sig = signature(row["text"] or "", settings.dedup)
                    row["signature"] = list(sig) if sig else None
                article_store.insert_articles(con, rows)
                counts["articles"] += len(rows)
            legacy.record_upgrade(con, f"upgrade-{uuid.uuid4().hex[:8]}", started, json.dumps(counts))
    finally:
        legacy.detach(con)
    return counts
