"""SQL for alert_matches and deliveries (the outbox that makes alerts at-least-once)."""
from __future__ import annotations

from datetime import datetime
from typing import Mapping, Sequence

import duckdb

from ingest.models import AlertHit

from .db import json_param

PENDING, SENT, FAILED = "pending", "sent", "failed"


def record_hits(con: duckdb.DuckDBPyConnection, hits: Sequence[AlertHit], routes: Mapping[str, Sequence[str]],
                ids: Mapping[tuple[str, int, str], str], now: datetime, held: bool = False) -> list[AlertHit]:
    """Store matches and queue one pending delivery per channel; return the hits that were not stored before.

    `held` marks matches kept back by a rule's cooldown or max_per_run: listed, never delivered."""
    if not hits:
        return []
    rows = [{"alert": h.alert, "article_id": h.article_id, "matched_terms": list(h.matched_terms),
             "snippet": h.snippet, "snippet_html": h.snippet_html, "created_at": now, "held": held} for h in hits]
    # No UNIQUE constraint in DuckLake: the single writer anti-joins against what is stored.
    known = {tuple(r) for r in con.execute("""
        SELECT alert, article_id FROM alert_matches
        WHERE article_id IN (SELECT unnest(from_json(?::JSON, '["BIGINT"]')))""",
        [json_param(sorted({h.article_id for h in hits}))]).fetchall()}
    fresh_rows, seen = [], set(known)
    for row in rows:
        if (row["alert"], row["article_id"]) not in seen:
            seen.add((row["alert"], row["article_id"]))
            fresh_rows.append(row)
    if fresh_rows:
        con.execute("""
            INSERT INTO alert_matches BY NAME SELECT * FROM (SELECT unnest(from_json(?::JSON,
              '[{"alert":"VARCHAR","article_id":"BIGINT","matched_terms":"VARCHAR[]","snippet":"VARCHAR",
                 "snippet_html":"VARCHAR","created_at":"TIMESTAMPTZ","held":"BOOLEAN"}]'), recursive := true))""",
                    [json_param(fresh_rows)])
    fresh = {(r["alert"], r["article_id"]) for r in fresh_rows}
    new_hits = [h for h in hits if (h.alert, h.article_id) in fresh]
    queue = [{"alert": h.alert, "article_id": h.article_id, "channel": c, "status": PENDING, "attempts": 0,
              "created_at": now, "delivery_id": ids[(h.alert, h.article_id, c)]}
             for h in new_hits for c in routes.get(h.alert, ())]
    if queue:
        # A match is new, so none of its deliveries can exist yet.
        con.execute("""
            INSERT INTO deliveries BY NAME SELECT * FROM (SELECT unnest(from_json(?::JSON,
              '[{"alert":"VARCHAR","article_id":"BIGINT","channel":"VARCHAR","status":"VARCHAR","attempts":"INTEGER",
                 "created_at":"TIMESTAMPTZ","delivery_id":"VARCHAR"}]'), recursive := true))""", [json_param(queue)])
    return new_hits


def last_hit_at(con: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    """When each alert last had a hit that was sent on (for cooldowns)."""
    return dict(con.execute(
        "SELECT alert, max(created_at) FROM alert_matches WHERE NOT held GROUP BY alert").fetchall())


def pending(con: duckdb.DuckDBPyConnection, channels: Sequence[str]) -> list[tuple[AlertHit, str, int]]:
    """(hit, channel, attempts so far) for every pending delivery on the given channels, oldest first."""
    if not channels:
        return []
    rows = con.execute("""
        SELECT d.alert, d.article_id, a.url, a.title, a.feed_url, a.published_at, m.matched_terms, m.snippet,
               m.snippet_html, d.channel, d.attempts
        FROM deliveries d
        JOIN alert_matches m USING (alert, article_id)
        JOIN articles a ON a.id = d.article_id
        WHERE d.status = 'pending' AND d.channel IN (SELECT unnest(from_json(?::JSON, '["VARCHAR"]')))
        ORDER BY d.created_at, d.alert, a.published_at""", [json_param(list(channels))]).fetchall()
    return [(AlertHit(alert=r[0], article_id=r[1], url=r[2], title=r[3], feed_url=r[4], published_at=r[5],
                      matched_terms=tuple(r[6] or ()), snippet=r[7] or "", snippet_html=r[8] or ""), r[9], r[10])
            for r in rows]


def mark(con: duckdb.DuckDBPyConnection, hit: AlertHit, channel: str, status: str, attempts: int,
         error: str | None, now: datetime) -> None:
    """Record one delivery try with the status the delivery stage decided (sent_at set when sent)."""
    con.execute("""
        UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, sent_at = ?
        WHERE alert = ? AND article_id = ? AND channel = ?""",
                [status, attempts, error, now if status == SENT else None, hit.alert, hit.article_id, channel])


def recent(con: duckdb.DuckDBPyConnection, limit: int = 50) -> tuple[list[str], list[tuple]]:
    """Latest hits with their delivery status per channel ('held back' for hits never sent)."""
    # Deliveries are folded per hit first: one aggregate beside plain columns is a binder error in DuckDB.
    result = con.execute("""
        WITH per_hit AS (
            SELECT alert, article_id,
                   string_agg(channel || ':' || status || CASE
                       WHEN status <> 'sent' AND attempts > 0
                       THEN ' (' || attempts || CASE WHEN attempts = 1 THEN ' try' ELSE ' tries' END
                            || ': ' || coalesce(last_error, '') || ')'
                       WHEN last_error IS NOT NULL THEN ' (' || last_error || ')'
                       ELSE '' END,
                       ', ' ORDER BY channel) AS deliveries
            FROM deliveries GROUP BY alert, article_id)
        SELECT strftime(m.created_at, '%Y-%m-%d %H:%M') AS at, m.alert, a.title, a.url,
               CASE WHEN m.held THEN 'held back' ELSE coalesce(d.deliveries, 'no channel') END AS deliveries
        FROM alert_matches m JOIN articles a ON a.id = m.article_id
        LEFT JOIN per_hit d USING (alert, article_id)
        ORDER BY m.created_at DESC, m.alert, a.url LIMIT ?""", [limit])
    return [d[0] for d in result.description], result.fetchall()


def last_sent_at(con: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    """When each channel last delivered anything (digest periods count from it)."""
    return dict(con.execute(
        "SELECT channel, max(sent_at) FROM deliveries WHERE status = 'sent' GROUP BY channel").fetchall())


def feed_entries(con: duckdb.DuckDBPyConnection, alert: str, limit: int = 50) -> list[tuple]:
    """The latest hits of one rule for its Atom feed: (article_id, url, title, author, published_at,
    matched_at, snippet, snippet_html), newest first; held hits included (a feed notifies nobody)."""
    return con.execute("""
        SELECT m.article_id, a.url, a.title, a.author, a.published_at, m.created_at, m.snippet, m.snippet_html
        FROM alert_matches m JOIN articles a ON a.id = m.article_id
        WHERE m.alert = ? ORDER BY m.created_at DESC, m.article_id LIMIT ?""", [alert, limit]).fetchall()
