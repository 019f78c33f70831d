"""SQL for the feeds and fetch_log tables."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Sequence

import duckdb

from ingest.models import NOT_MODIFIED, OK, FeedResponse, FeedSource, FetchAttempt

from .db import json_param

# A failing feed is retried after 15 min, 30 min, 1 h, ... capped at one day, so it never slows the others.
FIRST_BACKOFF = timedelta(minutes=15)
MAX_BACKOFF = timedelta(days=1)


def sync_feeds(con: duckdb.DuckDBPyConnection, sources: Sequence[FeedSource]) -> None:
    """Insert configured feeds, refreshing their name and tags; keeps their fetch state."""
    if not sources:
        return
    rows = [{"url": s.url, "name": s.name, "tags": list(s.tags)} for s in sources]
    con.execute("""
        INSERT INTO feeds (url, name, tags)
        SELECT url, name, tags FROM (SELECT unnest(from_json(?::JSON,
            '[{"url":"VARCHAR","name":"VARCHAR","tags":"VARCHAR[]"}]'), recursive := true))
        ON CONFLICT (url) DO UPDATE SET name = excluded.name, tags = excluded.tags""", [json_param(rows)])


def with_state(con: duckdb.DuckDBPyConnection, sources: Sequence[FeedSource],
               now: datetime) -> tuple[list[FeedSource], list[FeedSource]]:
    """Split feeds into (due now, carrying stored validators) and (backing off after failures)."""
    state = {row[0]: row[1:] for row in con.execute(
        "SELECT url, etag, last_modified, next_check_at FROM feeds").fetchall()}
    due, waiting = [], []
    for s in sources:
        etag, last_modified, next_check_at = state.get(s.url, (None, None, None))
        source = FeedSource(s.url, s.name, s.tags, etag, last_modified)
        (waiting if next_check_at is not None and next_check_at > now else due).append(source)
    return due, waiting


def record_feed_result(con: duckdb.DuckDBPyConnection, response: FeedResponse, error: str | None,
                       now: datetime) -> None:
    """Store a feed's outcome: validators on success, a growing back-off on failure."""
    ok = response.outcome in (OK, NOT_MODIFIED) and error is None
    if ok:
        con.execute("""
            UPDATE feeds SET last_fetched_at = ?, last_ok_at = ?, last_status = ?, last_outcome = ?,
                   last_error = NULL, consecutive_failures = 0, next_check_at = NULL,
                   etag = coalesce(?, etag), last_modified = coalesce(?, last_modified)
            WHERE url = ?""", [now, now, response.status, response.outcome, response.etag, response.last_modified,
                               response.source.url])
        return
    failures = con.execute("SELECT consecutive_failures FROM feeds WHERE url = ?",
                           [response.source.url]).fetchone()
    count = (failures[0] if failures else 0) + 1
    backoff = min(FIRST_BACKOFF * 2 ** (count - 1), MAX_BACKOFF)
    con.execute("""
        UPDATE feeds SET last_fetched_at = ?, last_status = ?, last_outcome = ?, last_error = ?,
               consecutive_failures = ?, next_check_at = ?
        WHERE url = ?""", [now, response.status, response.outcome, error or response.error, count, now + backoff,
                           response.source.url])


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
