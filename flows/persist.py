"""The store stage: link new articles to their duplicates and write them, lake first, index second.

Dedup questions go to the index (B-tree probes whose cost does not grow with history); the rows
and links go to the lake in one commit per batch; the index then records the new keys. A run
killed between the two commits leaves the index behind the lake, never ahead of it, and
`catch_up_index` replays what it missed when the store is next opened.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ingest.dedup import (DedupParams, Link, Member, band_keys_many, hash_key, normalise_text,
                          plan_links, probe_buckets, signatures_of_normalised, time_bucket)
from ingest.models import Article
from ingest.urls import url_id
from storage import articles as article_store
from storage.db import SharedCatalog, open_writer, store_dir, write
from storage.keys import KeyIndex, SqliteKeys
from search.index import IndexDamaged, IndexDoc, SearchIndex

from flows.search import index_from, index_path

log = logging.getLogger("newsmon.store")


@dataclass(frozen=True)
class Prepared:
    """An article with its dedup features (computed where the CPU is free: a worker for big batches)."""

    article: Article
    id: int
    signature: tuple[int, ...] | None
    bands: tuple[int, ...]
    bucket: int  # the time bucket its band keys are filed under
    probes: tuple[int, int]  # the buckets its copies are looked for in


@dataclass(frozen=True)
class StoreResult:
    """What one stored batch added."""

    inserted: tuple[int, ...]  # ids of rows that were not there before
    new_stories: tuple[int, ...]  # inserted originals whose cluster has no earlier-stored member
    duplicates: tuple[Link, ...]  # links given to inserted rows that are copies
    waiting: tuple[str, ...] = ()  # entry URLs not stored: their page failed transiently, tried again next run


@dataclass
class Store:
    """The open store: the lake session and the dedup keys (index.sqlite, or PostgreSQL when shared)."""

    con: object  # duckdb connection, with the lake attached and in use
    keys: KeyIndex
    database: Path
    search: SearchIndex | None = None  # the full-text index, with this process as its only writer
    search_s: float = 0.0  # time spent keeping the full-text index up to date

    @property
    def index(self):
        """The sqlite3 connection of a one-machine store's index."""
        return self.keys.con

    def checkpoint_index(self) -> None:
        """Write the index's WAL back into its file (a long import does it as it goes)."""
        self.keys.checkpoint()

    @contextmanager
    def timing_search(self) -> Iterator[None]:
        """Count the time spent inside in search_s (the run reports it as the index's upkeep)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.search_s += time.perf_counter() - started

    def commit_search(self) -> None:
        """Publish the articles added to the full-text index since its last commit."""
        with self.timing_search():
            self.search.commit()

    def close(self) -> None:
        """Commit what the indexes hold open, write them back, then close every connection.

        Each is closed even when another fails (a full disk): the lake is the truth, and the next
        open catches both indexes up from it."""
        try:
            self.keys.close()
        finally:
            try:
                if self.search is not None:
                    search, self.search = self.search, None
                    with self.timing_search():
                        search.close()
            finally:
                self.con.close()


def open_store(database: Path, params: DedupParams, memory_limit: str = "2GB", index_cache_mb: int = 64,
               shared: SharedCatalog | None = None, run_id: str | None = None, search_heap_mb: int = 64,
               search_threads: int = 1) -> Store:
    """Open the store for writing and bring the dedup and search indexes level with the lake.

    search_threads: the full-text index's indexing threads (a bulk import gives it one per core).

    With a shared catalog (several writers) there is no local full-text index: see docs/SCALING.md."""
    con = open_writer(database, memory_limit, shared)
    if shared is None:
        keys: KeyIndex = SqliteKeys(store_dir(database) / "index.sqlite", index_cache_mb, params.key_layout)
    else:
        from storage.pgkeys import PgKeys

        keys = PgKeys(shared.conninfo, run_id, params.key_layout)
    store = Store(con, keys, database)
    try:
        with keys.exclusive():
            empty = keys.last_seq() == 0
            caught_up = catch_up_index(store, params)
        if keys.damaged:
            log.warning("dedup index %s was damaged (%s): rebuilt from the %d article(s) in the lake",
                        store_dir(database) / "index.sqlite", keys.damaged, caught_up)
        elif caught_up and empty:
            log.warning("dedup index built from the %d article(s) in the lake", caught_up)
        elif caught_up:
            log.warning("dedup index caught up with %d article(s) stored by an interrupted run", caught_up)
        if shared is None:
            _open_search(store, database, search_heap_mb, search_threads)
    except BaseException:
        store.close()
        raise
    return store


def _open_search(store: Store, database: Path, heap_mb: int, threads: int = 1) -> None:
    """Open the full-text index and catch it up with the lake; a damaged one is started over and rebuilt."""
    path = index_path(database)
    try:
        store.search, damaged = SearchIndex.open_writer(path, heap_mb=heap_mb, threads=threads), None
    except IndexDamaged as exc:
        store.search, damaged = SearchIndex.open_writer(path, heap_mb=heap_mb, threads=threads,
                                                        start_over=True), exc.reason
    with store.timing_search():
        indexed = index_from(store.con, store.search, store.search.last_seq(), commit_every=100_000)
    if damaged:
        log.warning("search index %s was damaged (%s): rebuilt from the %d article(s) in the lake", path, damaged,
                    indexed)
    elif indexed:
        log.warning("search index caught up with %d article(s) the lake held beyond it", indexed)


def prepare(articles: Sequence[Article], params: DedupParams) -> list[Prepared]:
    """Compute the dedup features of a batch; pure, so it can run in a worker process."""
    sigs = signatures_of_normalised([normalise_text(a.text) for a in articles], params)
    return prepared_from(articles, sigs, params)


def prepared_from(articles: Sequence[Article], sigs: Sequence[tuple[int, ...] | None],
                  params: DedupParams) -> list[Prepared]:
    """Prepared records from articles and their signatures (band keys computed here, all at once)."""
    bands = iter(band_keys_many([s for s in sigs if s], params))
    out = []
    for a, sig in zip(articles, sigs):
        at = _appeared(a.published_at, a.fetched_at)
        out.append(Prepared(a, url_id(a.url), sig, tuple(next(bands)) if sig else (), time_bucket(at, params),
                            probe_buckets(at, params)))
    return out


def _appeared(published_at: datetime | None, fetched_at: datetime | None) -> datetime:
    """When an article appeared, for time buckets: its publication date, else when it was fetched."""
    return published_at or fetched_at or datetime.now(timezone.utc)


def store_articles(store: Store, batch: Sequence[Prepared], params: DedupParams, run_id: str,
                   queue_alerts: bool = True, also: Callable[[object], None] | None = None,
                   commit_index: bool = True) -> StoreResult:
    """Store the batch's new articles with their duplicate links; re-running it adds nothing.

    `also(con)` runs in the same lake transaction (e.g. the batch's fetch_log rows). commit_index=False
    leaves the index commit to a later batch or to Store.close(): the lake is committed either way,
    and an index left behind by a crash is caught up on the next open.

    With shared keys (several writers) the whole step is taken in turn: each batch is linked against
    everything committed before it, as with one writer. A writer that died between its lake commit
    and its key commit left the keys behind the lake: the next one catches them up first."""
    with store.keys.exclusive():
        if store.keys.shared and article_store.max_seq(store.con) > store.keys.last_seq():
            caught_up = catch_up_index(store, params)
            log.warning("dedup keys caught up with %d article(s) stored by an interrupted writer", caught_up)
        return _store_in_turn(store, batch, params, run_id, queue_alerts, also, commit_index)


def _store_in_turn(store: Store, batch: Sequence[Prepared], params: DedupParams, run_id: str,
                   queue_alerts: bool, also: Callable[[object], None] | None, commit_index: bool) -> StoreResult:
    fresh = _unknown(store, batch)
    if not fresh:
        if also:
            write(store.con, also)
        return StoreResult((), (), ())
    stored = _stored_candidates(store, fresh)
    base = store.keys.last_seq()
    new = [_member(p, base + i + 1) for i, p in enumerate(fresh)]
    links = plan_links(new, stored, params)
    result = _result(new, stored, links)
    by_id = {l.article_id: l for l in links}
    new_ids = {m.id for m in new}
    seq_of = {m.id: m.seq for m in stored}
    columns = _columns(fresh, new, by_id, run_id)
    relinks = [{"id": l.article_id, "seq": seq_of[l.article_id], "duplicate_of": l.duplicate_of, "kind": l.kind,
                "similarity": l.similarity} for l in links if l.article_id not in new_ids]

    def commit(con) -> None:
        article_store.insert_article_columns(con, columns)
        article_store.update_links(con, relinks)
        if queue_alerts:
            article_store.queue_for_alerts(con, result.new_stories)
        if also:
            also(con)

    write(store.con, commit)
    store.keys.add(*_keys(fresh), [(l.article_id, l.duplicate_of) for l in links], base + len(new),
                   [_member_row(m) for m in new], commit=commit_index)
    _index_text(store, fresh, new, commit_index)
    return result


def _index_text(store: Store, fresh: Sequence[Prepared], new: Sequence[Member], commit: bool) -> None:
    """Add the batch to the full-text index, after its lake commit (so the index is never ahead of the lake)."""
    if store.search is None:
        return
    with store.timing_search():
        store.search.add(IndexDoc(p.id, m.seq, p.article.url, p.article.title, p.article.text,
                                  p.article.published_at, p.article.language, p.article.feed_url)
                         for p, m in zip(fresh, new))
    if commit:
        store.commit_search()


def known(store: Store, urls: Iterable[str]) -> set[str]:
    """The URLs (canonical, or as a feed linked them) that are already stored."""
    ids = {url_id(u): u for u in urls}
    return {ids[k] for k in store.keys.known_urls(list(ids))}


def catch_up_index(store: Store, params: DedupParams) -> int:
    """Add to the index what the lake holds beyond its last_seq; return the number of articles added."""
    added = 0
    for rows in article_store.stored_after(store.con, store.keys.last_seq()):
        url_keys, hash_keys, bands, members = [], [], [], []
        keys = iter(band_keys_many([r[4] for r in rows if r[4]], params))
        for id_, seq, published_at, chash, sig, _dup, url, source_url, fetched_at in rows:
            url_keys += [(url_id(url), id_)] + ([(url_id(source_url), id_)] if source_url else [])
            hash_keys.append((hash_key(chash), id_))
            bucket = time_bucket(_appeared(published_at, fetched_at), params)
            if sig:
                bands += [(bucket, k, id_) for k in next(keys)]
            members.append(_member_row(Member(id_, seq, published_at, chash, tuple(sig) if sig else None,
                                              bucket=bucket)))
        ids = [r[0] for r in rows]
        # Stored copies re-pointed to one of these rows were updated in the same lake commit.
        links = [(r[0], r[5]) for r in rows] + article_store.copies_of(store.con, ids)
        bands.sort()  # key order: see _band_rows
        store.keys.add(url_keys, hash_keys, bands, links, rows[-1][1], members)
        added += len(rows)
    return added


def _unknown(store: Store, batch: Sequence[Prepared]) -> list[Prepared]:
    """The batch without repeated URLs and URLs already stored, oldest first."""
    unique: dict[int, Prepared] = {}
    for p in batch:
        unique.setdefault(p.id, p)
    keys = list(unique) + [url_id(p.article.source_url) for p in unique.values() if p.article.source_url]
    seen = store.keys.known_urls(keys)
    fresh = [p for p in unique.values()
             if p.id not in seen and not (p.article.source_url and url_id(p.article.source_url) in seen)]
    # Storage order decides ties between copies published at the same time: earliest first, then input order.
    return sorted(fresh, key=lambda p: (p.article.published_at is None, p.article.published_at or 0))


def _stored_candidates(store: Store, fresh: Sequence[Prepared]) -> list[Member]:
    """Stored articles sharing a content hash or a band key with the batch, with their whole clusters."""
    hits = store.keys.candidates(_band_probes(fresh), list({hash_key(p.article.content_hash) for p in fresh}))
    ids = store.keys.clusters(hits)
    found = [Member(id=r[0], seq=r[1], published_at=_from_us(r[2]), content_hash=r[3],
                    signature=_unpack(r[4]), duplicate_of=r[5], bucket=r[6])
             for r in store.keys.members(ids)]
    # An index written before it kept member rows: those few are read from the lake.
    missing = sorted(set(ids) - {m.id for m in found})
    return found + [Member(id=r[0], seq=r[1], published_at=r[2], content_hash=r[3],
                           signature=tuple(r[4]) if r[4] else None, duplicate_of=r[5])
                    for r in article_store.members(store.con, missing)]


def _band_probes(fresh: Sequence[Prepared]) -> dict[int, list[int]]:
    """Bucket -> the distinct band keys to look for in it (each article looks in its two probe buckets)."""
    import numpy as np  # on first use: a run with nothing new never loads numpy
    signed = [p for p in fresh if p.bands]
    if not signed:
        return {}
    keys = np.asarray([p.bands for p in signed], dtype=np.int64)
    probes = np.asarray([p.probes for p in signed], dtype=np.int64)
    # Repeated keys are left in: SQLite answers a repeat from a cached page, faster than numpy dedups them.
    return {int(b): keys[(probes == b).any(axis=1)].ravel().tolist() for b in set(probes.ravel().tolist())}


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _member_row(m: Member) -> tuple:
    """What the index keeps of an article for dedup planning, so planning never scans the lake."""
    import numpy as np
    published = None
    if m.published_at is not None:
        at = m.published_at if m.published_at.tzinfo else m.published_at.replace(tzinfo=timezone.utc)
        published = (at - _EPOCH) // timedelta(microseconds=1)
    blob = np.asarray(m.signature, dtype=np.uint32).tobytes() if m.signature else None
    return (m.id, m.seq, published, m.content_hash, blob, m.bucket)


def _from_us(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _unpack(blob: bytes | None) -> tuple[int, ...] | None:
    import numpy as np
    return tuple(np.frombuffer(blob, dtype=np.uint32).tolist()) if blob else None


def _member(p: Prepared, seq: int) -> Member:
    return Member(id=p.id, seq=seq, published_at=p.article.published_at, content_hash=p.article.content_hash,
                  signature=p.signature, duplicate_of=None, bands=p.bands or None, bucket=p.bucket, probes=p.probes)


def _keys(fresh: Sequence[Prepared]) -> tuple[list, list, list]:
    url_keys = [(p.id, p.id) for p in fresh]
    url_keys += [(url_id(p.article.source_url), p.id) for p in fresh if p.article.source_url]
    hash_keys = [(hash_key(p.article.content_hash), p.id) for p in fresh]
    return url_keys, hash_keys, _band_rows(fresh)


def _band_rows(fresh: Sequence[Prepared]) -> list[tuple[int, int, int]]:
    """(bucket, key, article id) of the batch, in key order.

    Inserted in order, consecutive keys land on the same B-tree pages: half the cost of random order
    (2 against 4-7 microseconds a key, 3 million keys into the index)."""
    import numpy as np
    signed = [p for p in fresh if p.bands]
    if not signed:
        return []
    keys = np.asarray([p.bands for p in signed], dtype=np.int64)
    buckets = np.repeat(np.asarray([p.bucket for p in signed], dtype=np.int64), keys.shape[1])
    ids = np.repeat(np.asarray([p.id for p in signed], dtype=np.int64), keys.shape[1])
    keys = keys.ravel()
    order = np.lexsort((ids, keys, buckets))
    return list(zip(buckets[order].tolist(), keys[order].tolist(), ids[order].tolist()))


def _columns(fresh: Sequence[Prepared], new: Sequence[Member], links: dict[int, Link], run_id: str) -> dict:
    """The article rows to insert, one list per column."""
    articles = [p.article for p in fresh]
    copies = [links.get(p.id) for p in fresh]
    copies = [link if link is not None and link.duplicate_of is not None else None for link in copies]
    columns = {name: [getattr(a, name) for a in articles] for name in _ARTICLE_FIELDS}
    columns.update(id=[p.id for p in fresh], seq=[m.seq for m in new], run_id=[run_id] * len(fresh),
                   signature=[list(p.signature) if p.signature else None for p in fresh],
                   duplicate_of=[c.duplicate_of if c else None for c in copies],
                   duplicate_kind=[c.kind if c else None for c in copies],
                   similarity=[c.similarity if c else None for c in copies])
    return columns


_ARTICLE_FIELDS = ("url", "source_url", "feed_url", "title", "author", "published_at", "date_source", "fetched_at",
                   "language", "text", "word_count", "description", "sitename", "extraction", "content_hash")


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
