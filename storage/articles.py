"""SQL for articles and their duplicate links (exact hash + MinHash LSH band keys)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import duckdb

from ingest.dedup import DedupParams, Link, Member, band_keys, plan_links, signature
from ingest.models import Article
from ingest.urls import url_id

from .db import json_param, transaction

_ARTICLE_SPEC = ('[{"id":"BIGINT","seq":"BIGINT","url":"VARCHAR","source_url":"VARCHAR","feed_url":"VARCHAR",'
                 '"title":"VARCHAR","author":"VARCHAR","published_at":"TIMESTAMPTZ","date_source":"VARCHAR",'
                 '"fetched_at":"TIMESTAMPTZ","language":"VARCHAR","text":"VARCHAR","word_count":"INTEGER","description":"VARCHAR",'
                 '"sitename":"VARCHAR","extraction":"VARCHAR","content_hash":"VARCHAR","signature":"UINTEGER[]",'
                 '"run_id":"VARCHAR","duplicate_of":"BIGINT","duplicate_kind":"VARCHAR","similarity":"DOUBLE"}]')


@dataclass(frozen=True)
class StoreResult:
    """What one stored batch added."""

    inserted: tuple[int, ...]  # ids of rows that were not there before
    new_stories: tuple[int, ...]  # inserted originals whose cluster has no earlier-stored member
    duplicates: tuple[Link, ...]  # links given to inserted rows that are copies


def known_urls(con: duckdb.DuckDBPyConnection, urls: Sequence[str]) -> set[str]:
    """The subset of canonical URLs already stored."""
    if not urls:
        return set()
    rows = con.execute("""SELECT a.url FROM articles a
        JOIN (SELECT unnest(from_json(?::JSON, '["VARCHAR"]')) AS url) q USING (url)""",
                       [json_param(list(set(urls)))]).fetchall()
    return {r[0] for r in rows}


def store_articles(con: duckdb.DuckDBPyConnection, articles: Sequence[Article], params: DedupParams,
                   run_id: str) -> StoreResult:
    """Insert a batch and link its duplicates, all in one transaction; re-running it adds nothing."""
    rows = _rows(articles, params, run_id)
    if not rows:
        return StoreResult((), (), ())
    with transaction(con):
        # Everything is read before anything is written: once the transaction holds uncommitted rows of
        # a table, DuckDB scans the whole table instead of its indexes (docs/DEDUP.md, "Storage").
        present = _present_ids(con, [r["id"] for r in rows])
        rows = [r for r in rows if r["id"] not in present]
        if not rows:
            return StoreResult((), (), ())
        stored = _candidates(con, rows, params)
        new = _number(con, rows)
        links = plan_links(new, stored, params)
        result = _result(new, stored, links)
        # New rows are written once, links included (an UPDATE rewrites the whole row); only stored rows
        # re-pointed to a new original are updated.
        _insert(con, rows, {l.article_id: l for l in links})
        _queue_for_alerts(con, result.new_stories)
        new_ids = {m.id for m in new}
        _apply_links(con, [l for l in links if l.article_id not in new_ids])
        _insert_bands(con, rows, params)
    return result


def _present_ids(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> set[int]:
    rows = con.execute("""SELECT a.id FROM articles a
        JOIN (SELECT unnest(from_json(?::JSON, '["BIGINT"]')) AS id) q USING (id)""", [json_param(ids)]).fetchall()
    return {r[0] for r in rows}


def _rows(articles: Sequence[Article], params: DedupParams, run_id: str) -> list[dict]:
    rows, seen = [], set()
    for a in articles:
        if a.url in seen:  # the same canonical URL twice in one batch (feed variants of one link)
            continue
        seen.add(a.url)
        sig = signature(a.text, params)
        rows.append({"id": url_id(a.url), "url": a.url, "source_url": a.source_url, "feed_url": a.feed_url,
                     "title": a.title, "author": a.author, "published_at": a.published_at,
                     "date_source": a.date_source, "fetched_at": a.fetched_at, "language": a.language,
                     "text": a.text, "word_count": a.word_count, "description": a.description,
                     "sitename": a.sitename, "extraction": a.extraction, "content_hash": a.content_hash,
                     "signature": list(sig) if sig else None, "run_id": run_id})
    # Storage order decides ties between copies published at the same time: earliest first, then feed order.
    return sorted(rows, key=lambda r: (r["published_at"] is None, r["published_at"] or 0))


def _number(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> list[Member]:
    """Give rows their storage order (seq) and return them as dedup members."""
    # Single writer: numbering from max(seq) inside the transaction keeps storage order exactly the list order.
    base = con.execute("SELECT coalesce(max(seq), 0) FROM articles").fetchone()[0]
    for i, row in enumerate(rows):
        row["seq"] = base + i + 1
    return [_member(row, row["seq"]) for row in rows]


def _insert(con: duckdb.DuckDBPyConnection, rows: list[dict], links: dict[int, Link]) -> None:
    for row in rows:
        link = links.get(row["id"])
        row["duplicate_of"] = link.duplicate_of if link else None
        row["duplicate_kind"] = link.kind if link and link.duplicate_of is not None else None
        row["similarity"] = link.similarity if link and link.duplicate_of is not None else None
    con.execute(f"""
        INSERT INTO articles BY NAME
        SELECT * FROM (SELECT unnest(from_json(?::JSON, '{_ARTICLE_SPEC}'), recursive := true))
        ON CONFLICT DO NOTHING""", [json_param(rows)])


def _member(row: dict, seq: int) -> Member:
    sig = row["signature"]
    return Member(id=row["id"], seq=seq, published_at=row["published_at"], content_hash=row["content_hash"],
                  signature=tuple(sig) if sig else None, duplicate_of=None)


# Every step is a join whose small side DuckDB turns into an IN filter on the big table's index.
# (`id IN (subquery) OR duplicate_of IN (subquery)` cannot be served that way: it scanned articles.)
_CANDIDATES = """
    WITH probe_keys AS (SELECT DISTINCT unnest(from_json(?::JSON, '["BIGINT"]')) AS key),
    probe_hashes AS (SELECT DISTINCT unnest(from_json(?::JSON, '["VARCHAR"]')) AS content_hash),
    hits AS (
        SELECT b.article_id AS id FROM article_bands b JOIN probe_keys p ON b.key = p.key
        UNION
        SELECT a.id FROM articles a JOIN probe_hashes h ON a.content_hash = h.content_hash
    ),
    roots AS (SELECT DISTINCT coalesce(a.duplicate_of, a.id) AS root FROM articles a JOIN hits ON a.id = hits.id)
    SELECT a.id, a.seq, a.published_at, a.content_hash, a.signature, a.duplicate_of
    FROM articles a JOIN roots r ON a.id = r.root
    UNION
    SELECT a.id, a.seq, a.published_at, a.content_hash, a.signature, a.duplicate_of
    FROM articles a JOIN roots r ON a.duplicate_of = r.root"""
# DuckDB builds that IN filter only up to `dynamic_or_filter_threshold` values (50 by default), and a
# batch of 25 articles probes 800 band keys. Far bigger batches (a bulk import) keep the default: a
# scan of article_bands costs about as much as an IN filter that long.
_DEFAULT_OR_FILTER = 50
_MAX_INDEX_PROBE = 2048


def _candidates(con: duckdb.DuckDBPyConnection, rows: Sequence[dict], params: DedupParams) -> list[Member]:
    """Stored rows sharing a content hash or an LSH band key with one of `rows`, plus their whole clusters."""
    hashes = sorted({r["content_hash"] for r in rows})
    keys = sorted({k for r in rows if r["signature"] for k in band_keys(tuple(r["signature"]), params)})
    probe = len(keys) + len(hashes)
    widen = _DEFAULT_OR_FILTER < probe <= _MAX_INDEX_PROBE
    if widen:
        con.execute(f"SET dynamic_or_filter_threshold = {probe}")
    try:
        found = con.execute(_CANDIDATES, [json_param(keys), json_param(hashes)]).fetchall()
    finally:
        if widen:
            con.execute("RESET dynamic_or_filter_threshold")
    return [Member(id=r[0], seq=r[1], published_at=r[2], content_hash=r[3],
                   signature=tuple(r[4]) if r[4] else None, duplicate_of=r[5]) for r in found]


def _apply_links(con: duckdb.DuckDBPyConnection, links: Sequence[Link]) -> None:
    if not links:
        return
    rows = [{"id": l.article_id, "duplicate_of": l.duplicate_of, "kind": l.kind, "similarity": l.similarity}
            for l in links]
    con.execute("""
        UPDATE articles SET duplicate_of = l.duplicate_of, duplicate_kind = l.kind, similarity = l.similarity
        FROM (SELECT unnest(from_json(?::JSON,
            '[{"id":"BIGINT","duplicate_of":"BIGINT","kind":"VARCHAR","similarity":"DOUBLE"}]'), recursive := true)) l
        WHERE articles.id = l.id""", [json_param(rows)])


def _insert_bands(con: duckdb.DuckDBPyConnection, rows: Sequence[dict], params: DedupParams) -> None:
    bands = [{"key": key, "article_id": r["id"]} for r in rows if r["signature"]
             for key in band_keys(tuple(r["signature"]), params)]
    if bands:
        con.execute("""INSERT INTO article_bands SELECT * FROM (SELECT unnest(from_json(?::JSON,
            '[{"key":"BIGINT","article_id":"BIGINT"}]'), recursive := true))""", [json_param(bands)])


def _queue_for_alerts(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    if ids:
        con.execute("""INSERT INTO alert_queue SELECT unnest(from_json(?::JSON, '["BIGINT"]'))
                       ON CONFLICT DO NOTHING""", [json_param(list(ids))])


def pending_alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[int, Article]]:
    """Stories stored but not yet matched against the alert rules (this run's, or a crashed run's)."""
    return list(_articles(con, "WHERE id IN (SELECT article_id FROM alert_queue) AND duplicate_of IS NULL "
                               "ORDER BY seq"))


def clear_alert_queue(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Mark stories as matched; run it in the transaction that records their hits."""
    if ids:
        con.execute("""DELETE FROM alert_queue
                       WHERE article_id IN (SELECT unnest(from_json(?::JSON, '["BIGINT"]')))""",
                    [json_param(list(ids))])


def _result(new: Sequence[Member], stored: Sequence[Member], links: Sequence[Link]) -> StoreResult:
    linked = {l.article_id: l for l in links}

    def root(m: Member) -> int:
        if m.id in linked:
            return linked[m.id].duplicate_of or m.id
        return m.duplicate_of or m.id

    # A cluster that already had a stored member was alerted on before: becoming its original is not news.
    stored_roots = {root(s) for s in stored}
    stories = tuple(m.id for m in new if root(m) == m.id and m.id not in stored_roots)
    copies = tuple(linked[m.id] for m in new if root(m) != m.id)
    return StoreResult(tuple(m.id for m in new), stories, copies)


def originals(con: duckdb.DuckDBPyConnection, batch: int = 1000):
    """Yield (id, Article) for every stored original, newest first, streaming in batches."""
    yield from _articles(con, "WHERE duplicate_of IS NULL ORDER BY published_at DESC NULLS LAST, seq DESC", batch)


def _articles(con: duckdb.DuckDBPyConnection, where: str, batch: int = 1000):
    result = con.execute(f"""
        SELECT id, url, feed_url, title, author, published_at, date_source, fetched_at, language, text,
               content_hash, extraction, source_url, word_count, description, sitename
        FROM articles {where}""")
    while rows := result.fetchmany(batch):
        for r in rows:
            yield r[0], Article(url=r[1], feed_url=r[2], title=r[3], author=r[4], published_at=r[5],
                                date_source=r[6], fetched_at=r[7], language=r[8], text=r[9] or "",
                                content_hash=r[10], extraction=r[11], source_url=r[12], word_count=r[13] or 0,
                                description=r[14], sitename=r[15])
