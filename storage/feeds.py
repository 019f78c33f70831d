"""SQL for the feeds and fetch_log tables."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import duckdb

from ingest.models import FeedSource, FetchAttempt

from .db import json_param, json_spec

_FEED_STATE_SPEC = json_spec({
    "url": "VARCHAR", "etag": "VARCHAR", "last_modified": "VARCHAR", "last_fetched_at": "TIMESTAMPTZ",
    "last_ok_at": "TIMESTAMPTZ", "last_status": "INTEGER", "last_outcome": "VARCHAR", "last_error": "VARCHAR",
    "consecutive_failures": "INTEGER", "next_check_at": "TIMESTAMPTZ"})


def sync_feeds(con: duckdb.DuckDBPyConnection, sources: Sequence[FeedSource]) -> None:
    """Insert configured feeds, refreshing their name and tags; keeps their fetch state."""
    if not sources:
        return
    rows = [{"url": s.url, "name": s.name, "tags": list(s.tags)} for s in sources]
    con.execute("""
        MERGE INTO feeds USING (SELECT DISTINCT ON (url) * FROM (SELECT unnest(from_json(?::JSON,
            '[{"url":"VARCHAR","name":"VARCHAR","tags":"VARCHAR[]"}]'), recursive := true))) AS s
        ON feeds.url = s.url
        WHEN MATCHED AND (feeds.name IS DISTINCT FROM s.name OR feeds.tags IS DISTINCT FROM s.tags)
            THEN UPDATE SET name = s.name, tags = s.tags
        WHEN NOT MATCHED THEN INSERT (url, name, tags, consecutive_failures) VALUES (s.url, s.name, s.tags, 0)""",
                [json_param(rows)])


def feed_states(con: duckdb.DuckDBPyConnection) -> dict[str, tuple]:
    """url -> (etag, last_modified, next_check_at, consecutive_failures) of every known feed."""
    return {row[0]: row[1:] for row in con.execute(
        "SELECT url, etag, last_modified, next_check_at, coalesce(consecutive_failures, 0) FROM feeds").fetchall()}


def save_feed_states(con: duckdb.DuckDBPyConnection, states: Sequence[dict[str, Any]]) -> None:
    """Write each feed's new fetch state (one row per feed, keys of _FEED_STATE_SPEC) in one statement."""
    if states:
        con.execute(f"""
            UPDATE feeds SET etag = s.etag, last_modified = s.last_modified, last_fetched_at = s.last_fetched_at,
                   last_ok_at = s.last_ok_at, last_status = s.last_status, last_outcome = s.last_outcome,
                   last_error = s.last_error, consecutive_failures = s.consecutive_failures,
                   next_check_at = s.next_check_at
            FROM (SELECT unnest(from_json(?::JSON, '{_FEED_STATE_SPEC}'), recursive := true)) s
            WHERE feeds.url = s.url""", [json_param(states)])


def feed_rows(con: duckdb.DuckDBPyConnection, urls: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The stored fetch state of the given feeds, as dicts with the keys save_feed_states takes."""
    if not urls:
        return {}
    result = con.execute("""SELECT url, etag, last_modified, last_fetched_at, last_ok_at, last_status, last_outcome,
               last_error, coalesce(consecutive_failures, 0) AS consecutive_failures, next_check_at
        FROM feeds WHERE url IN (SELECT unnest(from_json(?::JSON, '["VARCHAR"]')))""", [json_param(list(urls))])
    names = [d[0] for d in result.description]
    return {r[0]: dict(zip(names, r)) for r in result.fetchall()}


def log_attempts(con: duckdb.DuckDBPyConnection, attempts: Iterable[FetchAttempt], run_id: str) -> int:
    """Append fetch_log rows, one per HTTP attempt."""
    rows = [{"at": a.at, "run_id": run_id, "url": a.url, "kind": a.kind, "status": a.status, "outcome": a.outcome,
             "error": a.error, "elapsed_ms": a.elapsed_ms, "bytes": a.bytes} for a in attempts]
    if rows:
        con.execute("""
            INSERT INTO fetch_log BY NAME SELECT * FROM (SELECT unnest(from_json(?::JSON,
              '[{"at":"TIMESTAMPTZ","run_id":"VARCHAR","url":"VARCHAR","kind":"VARCHAR","status":"INTEGER",
                 "outcome":"VARCHAR","error":"VARCHAR","elapsed_ms":"INTEGER","bytes":"BIGINT"}]'),
              recursive := true))""", [json_param(rows)])
    return len(rows)


def feed_health(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[tuple]]:
    """One row per feed: name, url, last ok, failures, last error, articles in the last 7 days."""
    result = con.execute("""
        SELECT f.name, f.url, strftime(f.last_ok_at, '%Y-%m-%d %H:%M') AS last_ok, f.consecutive_failures AS failures,
               f.last_error, count(a.id) AS articles_7d, strftime(f.next_check_at, '%Y-%m-%d %H:%M') AS next_check
        FROM feeds f LEFT JOIN articles a ON a.feed_url = f.url AND a.fetched_at > now() - INTERVAL 7 DAY
        GROUP BY ALL ORDER BY f.consecutive_failures DESC, f.url""")
    return [d[0] for d in result.description], result.fetchall()


def feed_tags(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, ...]]:
    """Tags of every known feed, by feed URL (alert rules can be scoped to tags)."""
    return {url: tuple(tags or ()) for url, tags in con.execute("SELECT url, tags FROM feeds").fetchall()}
