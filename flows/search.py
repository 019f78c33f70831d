"""`newsmon search`: ranked full-text search of the store, and the upkeep of its index.

The index (search/index.py) lives in `<name>.lake/search/`. The writer of the store keeps it level
with the lake: each stored batch is indexed after its lake commit, and opening the store indexes
whatever the lake holds beyond the index's highest seq (a killed run, an older store). Searching
reads the index only, plus the dedup index for `--originals`; the lake is read only to turn
`tag:NAME` into feed URLs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import tantivy

from alerts.match import snippet
from alerts.query import Node, language_code, parse
from ingest.models import Article
from search.index import IndexDamaged, IndexDoc, SearchIndex, index_dir
from search.query import Filters, compile_query, filtered, highlight_words, relaxed, slots_for
from storage import articles as article_store
from storage import index as key_index
from storage.db import open_reader, store_dir
from storage.feeds import feed_tags
from storage.lock import writer_lock

log = logging.getLogger("newsmon.search")
REINDEX_COMMIT_EVERY = 100_000  # a killed --reindex keeps what it committed; the next open goes on from there
_PAGE = 50  # hits read at a time when copies are filtered out


@dataclass(frozen=True)
class SearchHit:
    """One result line (the JSON object `newsmon search --format json` prints)."""

    id: int
    url: str
    title: str | None
    published_at: datetime | None
    feed_url: str | None
    language: str | None
    score: float
    snippet: str


def index_path(database: Path) -> Path:
    """Where a store's search index lives."""
    return index_dir(store_dir(database))


def index_from(con, index: SearchIndex, after_seq: int, commit_every: int = 0, progress=None) -> int:
    """Index the lake's articles stored after `after_seq`, in seq order; returns how many."""
    added = 0
    for rows in article_store.search_docs_after(con, after_seq):
        added += index.add(IndexDoc(*row) for row in rows)
        if commit_every and index.pending >= commit_every:
            index.commit()
        if progress:
            progress.advance(len(rows))
    index.commit()
    return added


def reindex(database: Path, memory_limit: str = "2GB", progress=None, wait_s: float = 600.0) -> int:
    """Rebuild the whole index from the lake (waits for a running writer to finish); returns the article count."""
    with writer_lock(database, wait_s=wait_s):
        con = open_reader(database, memory_limit)
        try:
            index = SearchIndex.open_writer(index_path(database), heap_mb=256, threads=2)
        except IndexDamaged:  # everything is indexed again anyway
            index = SearchIndex.open_writer(index_path(database), heap_mb=256, threads=2, start_over=True)
        try:
            if progress:
                progress.start(article_store.count_after(con, 0))
            index.clear()
            return index_from(con, index, 0, REINDEX_COMMIT_EVERY, progress)
        finally:
            index.close()
            con.close()


def resolve_feeds(database: Path, feeds: Sequence[str], memory_limit: str = "2GB") -> tuple[str, ...] | None:
    """--feed values (URLs or tag:NAME) -> feed URLs; None when no --feed was given."""
    if not feeds:
        return None
    urls = [f for f in feeds if not f.startswith("tag:")]
    tags = {f[4:].casefold() for f in feeds if f.startswith("tag:")}
    if tags:
        con = open_reader(database, memory_limit)
        try:
            urls += [url for url, have in feed_tags(con).items() if tags & {t.casefold() for t in have}]
        finally:
            con.close()
    return tuple(dict.fromkeys(urls))


def search(database: Path, text: str, filters: Filters = Filters(), limit: int = 20, originals: bool = False,
           node: Node | None = None) -> list[SearchHit]:
    """Ranked hits for a query in the rule language (raises QueryError); see search/query.py for the semantics."""
    node = node or parse(text)
    index = SearchIndex.open_reader(index_path(database))
    slots = slots_for(filters.languages)
    filters = Filters(filters.since, filters.until, tuple(language_code(x) for x in filters.languages),
                      filters.feed_urls)
    queries = [filtered(compile_query(node, slots), filters)]
    loose = relaxed(node, text, slots)
    if loose is not None:  # plain words: every word first, then some of them
        queries.append(filtered(loose, filters))
    copies = _copy_filter(database) if originals else None
    searcher = index.searcher()
    hits: dict[int, SearchHit] = {}
    try:
        for query in queries:
            _collect(searcher, query, node, limit, copies, hits)
            if len(hits) >= limit:
                break
    finally:
        if copies is not None:
            copies.close()
    return list(hits.values())[:limit]


def _copy_filter(database: Path):
    return key_index.open_index_reader(store_dir(database) / "index.sqlite")


def _collect(searcher: tantivy.Searcher, query: tantivy.Query, node: Node, limit: int, copies,
             hits: dict[int, SearchHit]) -> None:
    """Add hits of `query` (best first) until `hits` holds `limit`; copies are skipped when `copies` is given."""
    offset = 0
    page = limit + len(hits) if copies is None else max(_PAGE, 2 * limit)
    while len(hits) < limit:
        found = searcher.search(query, page, count=False, offset=offset).hits
        docs = [(score, searcher.doc(address).to_dict()) for score, address in found]
        skip = key_index.copies_among(copies, [d["id"][0] for _, d in docs]) if copies is not None else set()
        for score, doc in docs:
            if doc["id"][0] not in hits and doc["id"][0] not in skip and len(hits) < limit:
                hits[doc["id"][0]] = _hit(doc, score, node)
        if len(found) < page:
            return
        offset += page


def _first(doc: dict, name: str):
    values = doc.get(name) or [None]
    return values[0]


def _hit(doc: dict, score: float, node: Node) -> SearchHit:
    title, lead, language = _first(doc, "title") or "", _first(doc, "lead") or "", _first(doc, "lang") or None
    words = highlight_words(node, f"{title}\n{lead}", language)
    article = Article(url=_first(doc, "url"), feed_url=_first(doc, "feed") or "", title=title, author=None,
                      published_at=None, date_source=None, fetched_at=None, language=language, text=lead,
                      content_hash="", extraction="", source_url="")
    plain, _ = snippet(article, words) if words else snippet(article, [])
    return SearchHit(id=_first(doc, "id"), url=_first(doc, "url"), title=title or None,
                     published_at=_first(doc, "published"), feed_url=_first(doc, "feed") or None,
                     language=language, score=round(float(score), 4), snippet=plain)


def hits_as_rows(hits: Iterable[SearchHit]) -> tuple[list[str], list[tuple]]:
    """Column names and rows, for the table/JSON/CSV printers."""
    columns = ["id", "url", "title", "published_at", "feed_url", "language", "score", "snippet"]
    return columns, [(h.id, h.url, h.title, h.published_at, h.feed_url, h.language, h.score, h.snippet) for h in hits]


def matching_ids(database: Path, node: Node) -> list[int]:
    """Every article the query matches (strictly: no ranking, no partial matches), for exports."""
    index = SearchIndex.open_reader(index_path(database))
    searcher = index.searcher()
    query = compile_query(node)
    found = searcher.search(query, max(searcher.num_docs, 1), count=False).hits
    return searcher.fast_field_values("id", [address for _, address in found]) if found else []
