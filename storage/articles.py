"""SQL for articles, their duplicate links and the alert queue."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import duckdb

from ingest.models import Article

from .db import cursor, insert_columns, json_param, json_spec

# The one definition of an article row as newsmon writes it (the migration declares the same names).
ARTICLE_COLUMNS = {
    "id": "BIGINT", "seq": "BIGINT", "url": "VARCHAR", "source_url": "VARCHAR", "feed_url": "VARCHAR",
    "title": "VARCHAR", "author": "VARCHAR", "published_at": "TIMESTAMPTZ", "date_source": "VARCHAR",
    "fetched_at": "TIMESTAMPTZ", "language": "VARCHAR", "text": "VARCHAR", "word_count": "INTEGER",
    "description": "VARCHAR", "sitename": "VARCHAR", "extraction": "VARCHAR", "content_hash": "VARCHAR",
    "duplicate_of": "BIGINT", "duplicate_kind": "VARCHAR", "similarity": "DOUBLE", "signature": "UINTEGER[]",
    "run_id": "VARCHAR",
}
_LINK_SPEC = json_spec({"id": "BIGINT", "duplicate_of": "BIGINT", "kind": "VARCHAR", "similarity": "DOUBLE"})
_IDS = "SELECT unnest(from_json(?::JSON, '[\"BIGINT\"]'))"
# What dedup planning and index upkeep read back: identity, order, hash, signature and current link.
MEMBER_COLUMNS = "id, seq, published_at, content_hash, signature, duplicate_of, url, source_url"


def insert_articles(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Append article rows (every key of ARTICLE_COLUMNS); the caller has checked they are new."""
    insert_article_columns(con, {name: [row[name] for row in rows] for name in ARTICLE_COLUMNS})


def insert_article_columns(con: duckdb.DuckDBPyConnection, columns: dict[str, Sequence[Any]]) -> None:
    """Append articles given as one list per column of ARTICLE_COLUMNS."""
    insert_columns(con, "articles", ARTICLE_COLUMNS, columns)


def update_links(con: duckdb.DuckDBPyConnection, links: Sequence[dict[str, Any]]) -> None:
    """Re-point stored articles ({id, seq, duplicate_of, kind, similarity}) to a new original."""
    if links:
        seqs = [link["seq"] for link in links]
        # The seq range lets DuckLake skip every data file outside it (min/max statistics): without
        # it the UPDATE scanned all of `articles`, seconds per batch at a million articles.
        con.execute(f"""UPDATE articles SET duplicate_of = l.duplicate_of, duplicate_kind = l.kind,
                            similarity = l.similarity
            FROM (SELECT unnest(from_json(?::JSON, '{_LINK_SPEC}'), recursive := true)) l
            WHERE articles.id = l.id AND articles.seq BETWEEN ? AND ?""", [json_param(links), min(seqs), max(seqs)])


def members(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[tuple]:
    """MEMBER_COLUMNS of the given stored articles."""
    if not ids:
        return []
    return con.execute(f"SELECT {MEMBER_COLUMNS} FROM articles WHERE id IN ({_IDS})",
                       [json_param(sorted(ids))]).fetchall()


def stored_after(con: duckdb.DuckDBPyConnection, seq: int, batch: int = 10_000) -> Iterator[list[tuple]]:
    """MEMBER_COLUMNS and fetched_at of articles stored after `seq`, in storage order, a batch at a time."""
    # seq grows with every commit, so each data file's min/max lets DuckLake skip the older files.
    # A cursor of its own: callers write on `con` between batches, which would end this result.
    result = cursor(con).execute(f"SELECT {MEMBER_COLUMNS}, fetched_at FROM articles WHERE seq > ? ORDER BY seq",
                                 [seq])
    while rows := result.fetchmany(batch):
        yield rows


def copies_of(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> list[tuple[int, int]]:
    """(id, duplicate_of) of stored copies whose original is one of `ids`."""
    if not ids:
        return []
    return con.execute(f"SELECT id, duplicate_of FROM articles WHERE duplicate_of IN ({_IDS})",
                       [json_param(sorted(ids))]).fetchall()


def queue_for_alerts(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Queue new stories for the alert stage (in the transaction that stores them)."""
    if ids:
        con.execute(f"""INSERT INTO alert_queue SELECT DISTINCT q.id FROM ({_IDS}) q(id)
                        WHERE q.id NOT IN (SELECT article_id FROM alert_queue)""", [json_param(list(ids))])


def pending_alerts(con: duckdb.DuckDBPyConnection) -> list[tuple[int, Article]]:
    """Stories stored but not yet matched against the alert rules (this run's, or a crashed run's).

    A story is matched on its original: a queued article that has since become a copy of an
    earlier-published one (stored later, by this run or by another writer) brings its original."""
    roots = [r[0] for r in con.execute("""SELECT DISTINCT coalesce(duplicate_of, id) FROM articles
                                          WHERE id IN (SELECT article_id FROM alert_queue)""").fetchall()]
    if not roots:
        return []
    # Reading whole rows is filtered by seq, as literal values: DuckLake then skips every data file
    # whose seq range holds none of them. Filtered by id (a hash) or through a subquery, the same
    # read scanned every article's text: 5-8 s and 450 MB at a million articles, on every run.
    seqs = [r[0] for r in con.execute(f"SELECT seq FROM articles WHERE id IN ({_literal(roots)})").fetchall()]
    return list(_articles(con, f"""WHERE seq IN ({_literal(seqs)}) AND id IN ({_literal(roots)})
                                  AND duplicate_of IS NULL ORDER BY seq"""))


def _literal(ids: Sequence[int]) -> str:
    """A list of integers as SQL literals (ints only, so nothing can be injected)."""
    return ", ".join(str(int(i)) for i in ids)


def clear_alert_queue(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Mark stories (originals) as matched, with their queued copies; run it in the transaction that
    records their hits."""
    if ids:
        con.execute(f"""DELETE FROM alert_queue WHERE article_id IN ({_IDS})
                        OR article_id IN (SELECT id FROM articles WHERE duplicate_of IN ({_IDS}))""",
                    [json_param(list(ids)), json_param(list(ids))])


def max_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The highest seq stored in the lake (0 when empty): where the dedup keys must have caught up to."""
    return con.execute("SELECT coalesce(max(seq), 0) FROM articles").fetchone()[0]


def originals(con: duckdb.DuckDBPyConnection, batch: int = 1000):
    """Yield (id, Article) for every stored original, newest first, streaming in batches."""
    yield from _articles(con, "WHERE duplicate_of IS NULL ORDER BY published_at DESC NULLS LAST, seq DESC", batch)


def _articles(con: duckdb.DuckDBPyConnection, where: str, batch: int = 1000):
    result = cursor(con).execute(f"""
        SELECT id, url, feed_url, title, author, published_at, date_source, fetched_at, language, text,
               content_hash, extraction, source_url, word_count, description, sitename
        FROM articles {where}""")
    while rows := result.fetchmany(batch):
        for r in rows:
            yield r[0], Article(url=r[1], feed_url=r[2], title=r[3], author=r[4], published_at=r[5],
                                date_source=r[6], fetched_at=r[7], language=r[8], text=r[9] or "",
                                content_hash=r[10], extraction=r[11], source_url=r[12], word_count=r[13] or 0,
                                description=r[14], sitename=r[15])


# What the search index takes of each article (search.index.IndexDoc, in this order).
SEARCH_COLUMNS = "id, seq, url, title, text, published_at, language, feed_url"


def search_docs_after(con: duckdb.DuckDBPyConnection, seq: int, batch: int = 2000,
                      span: int = 20_000) -> Iterator[list[tuple]]:
    """SEARCH_COLUMNS of articles stored after `seq`, in storage order, a batch at a time.

    Read by seq ranges of `span`: each range is a small sort (one ORDER BY over a million texts spills
    gigabytes), and DuckLake skips the files outside it by their min/max statistics."""
    top = con.execute("SELECT max(seq) FROM articles").fetchone()[0] or 0
    for low in range(seq, top, span):
        result = cursor(con).execute(f"SELECT {SEARCH_COLUMNS} FROM articles WHERE seq > ? AND seq <= ? ORDER BY seq",
                                     [low, low + span])
        while rows := result.fetchmany(batch):
            yield rows


def count_after(con: duckdb.DuckDBPyConnection, seq: int) -> int:
    """How many articles were stored after `seq`."""
    return con.execute("SELECT count(*) FROM articles WHERE seq > ?", [seq]).fetchone()[0]
