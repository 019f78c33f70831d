"""SQL for sharing what was collected: story clusters and article exports."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import duckdb

from .db import json_param

# The documented columns of `newsmon export`, in file order (README, "Export").
EXPORT_COLUMNS = ("id", "url", "title", "author", "published_at", "fetched_at", "language", "feed_url", "sitename",
                  "word_count", "extraction", "duplicate_of", "duplicate_kind", "similarity", "text")
FORMATS = {".parquet": "(FORMAT parquet, COMPRESSION zstd)", ".csv": "(FORMAT csv, HEADER true)",
           ".jsonl": "(FORMAT json)"}
_HOST = r"regexp_replace(regexp_extract({}, '^[a-z]+://([^/:]+)', 1), '^www\.', '')"


def export_articles(con: duckdb.DuckDBPyConnection, out: Path, since: datetime | None = None,
                    originals: bool = False, ids: Sequence[int] | None = None) -> int:
    """Write the chosen articles to `out` (format by suffix: FORMATS), oldest first; returns the row count."""
    where, params = ["TRUE"], []
    if since is not None:
        where.append("published_at >= ?::TIMESTAMPTZ")
        params.append(since)
    if originals:
        where.append("duplicate_of IS NULL")
    if ids is not None:
        where.append("id IN (SELECT unnest(from_json(?::JSON, '[\"BIGINT\"]')))")
        params.append(json_param(sorted(ids)))
    # COPY takes no parameters: the selection goes through a temporary view of the session.
    con.execute(f"""CREATE OR REPLACE TEMP TABLE newsmon_export AS
        SELECT {', '.join(EXPORT_COLUMNS)} FROM articles WHERE {' AND '.join(where)}
        ORDER BY published_at NULLS LAST, seq""", params)
    try:
        target = str(out).replace("'", "''")
        return con.execute(f"COPY temp.newsmon_export TO '{target}' {FORMATS[out.suffix.lower()]}").fetchone()[0]
    finally:
        con.execute("DROP TABLE temp.newsmon_export")


def stories(con: duckdb.DuckDBPyConnection, since: datetime | None, min_sources: int,
            limit: int) -> tuple[list[str], list[tuple]]:
    """Story clusters with an article seen since `since`: first seen, title, outlets, who else ran it."""
    recent = "WHERE coalesce(published_at, fetched_at) >= ?::TIMESTAMPTZ" if since is not None else ""
    result = con.execute(f"""
        WITH recent AS (SELECT DISTINCT coalesce(duplicate_of, id) AS story FROM articles {recent}),
        members AS (
            SELECT coalesce(duplicate_of, id) AS story, coalesce(published_at, fetched_at) AS seen,
                   {_HOST.format('url')} AS outlet
            FROM articles WHERE coalesce(duplicate_of, id) IN (SELECT story FROM recent)),
        clusters AS (
            SELECT story, min(seen) AS first_seen, count(DISTINCT outlet) AS outlets,
                   list_sort(list_distinct(list(outlet))) AS all_outlets
            FROM members GROUP BY story HAVING count(DISTINCT outlet) >= ?)
        SELECT c.first_seen, o.title, c.outlets, {_HOST.format('o.url')} AS outlet,
               list_filter(c.all_outlets, x -> x <> {_HOST.format('o.url')}) AS also_reported_by, o.url, c.story AS id
        FROM clusters c JOIN articles o ON o.id = c.story
        ORDER BY c.first_seen DESC NULLS LAST, c.story LIMIT ?""",
                         ([since] if since is not None else []) + [min_sources, limit])
    return [d[0] for d in result.description], result.fetchall()
