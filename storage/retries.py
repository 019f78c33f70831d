"""SQL for page_retries: feed entries whose page failed transiently, waiting for a later run."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

import duckdb

from ingest.models import FeedEntry

from .db import json_param

_URLS = "SELECT unnest(from_json(?::JSON, '[\"VARCHAR\"]'))"
_ROW_SPEC = ('[{"url":"VARCHAR","feed_url":"VARCHAR","guid":"VARCHAR","title":"VARCHAR","published":"TIMESTAMPTZ",'
             '"summary":"VARCHAR","author":"VARCHAR","attempts":"INTEGER","last_outcome":"VARCHAR",'
             '"last_error":"VARCHAR","updated_at":"TIMESTAMPTZ"}]')


def waiting(con: duckdb.DuckDBPyConnection) -> list[FeedEntry]:
    """Every entry waiting for another try, oldest first."""
    rows = con.execute("""SELECT feed_url, guid, url, title, published, summary, author
                          FROM page_retries ORDER BY updated_at, url""").fetchall()
    return [FeedEntry(*row) for row in rows]


def attempts(con: duckdb.DuckDBPyConnection, urls: Sequence[str]) -> dict[str, int]:
    """Runs that have tried each of these entry URLs so far (absent: none)."""
    if not urls:
        return {}
    return dict(con.execute(f"SELECT url, attempts FROM page_retries WHERE url IN ({_URLS})",
                            [json_param(list(urls))]).fetchall())


def save(con: duckdb.DuckDBPyConnection, entries: Sequence[tuple[FeedEntry, int, str, str | None]],
         now: datetime) -> None:
    """Record (entry, attempts, outcome, error) for entries that wait for another run."""
    if not entries:
        return
    forget(con, [e.url for e, *_ in entries])
    rows = [{"url": e.url, "feed_url": e.feed_url, "guid": e.guid, "title": e.title, "published": e.published,
             "summary": e.summary, "author": e.author, "attempts": n, "last_outcome": outcome,
             "last_error": error, "updated_at": now} for e, n, outcome, error in entries]
    con.execute(f"INSERT INTO page_retries BY NAME SELECT * FROM (SELECT unnest(from_json(?::JSON, '{_ROW_SPEC}'),"
                " recursive := true))", [json_param(rows)])


def forget(con: duckdb.DuckDBPyConnection, urls: Sequence[str]) -> None:
    """Drop these entries from the waiting list (stored now, or given up)."""
    if urls:
        con.execute(f"DELETE FROM page_retries WHERE url IN ({_URLS})", [json_param(list(urls))])
