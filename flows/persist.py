"""The store stage: link new articles to their duplicates and write them, lake first, index second.

Dedup questions go to the index (B-tree probes whose cost does not grow with history); the rows
and links go to the lake in one commit per batch; the index then records the new keys. A run
killed between the two commits leaves the index behind the lake, never ahead of it, and
`catch_up_index` replays what it missed when the store is next opened.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ingest.dedup import (DedupParams, Link, Member, band_keys, band_keys_many, hash_key, normalise_text,
                          plan_links, signatures_of_normalised)
from ingest.models import Article
from ingest.urls import url_id
from storage import articles as article_store
from storage import index as key_index
from storage.db import open_writer, store_dir, transaction

log = logging.getLogger("newsmon.store")


@dataclass(frozen=True)
class Prepared:
    """An article with its dedup features (computed where the CPU is free: a worker for big batches)."""

    article: Article
    id: int
    signature: tuple[int, ...] | None
    bands: tuple[int, ...]


@dataclass(frozen=True)
class StoreResult:
    """What one stored batch added."""

    inserted: tuple[int, ...]  # ids of rows that were not there before
    new_stories: tuple[int, ...]  # inserted originals whose cluster has no earlier-stored member
    duplicates: tuple[Link, ...]  # links given to inserted rows that are copies
    waiting: tuple[str, ...] = ()  # entry URLs not stored: their page failed transiently, tried again next run


@dataclass
class Store:
    """The open store: the lake session and the dedup index."""

    con: object  # duckdb connection, with the lake attached and in use
    index: object  # sqlite3 connection to index.sqlite
    database: Path

    def checkpoint_index(self) -> None:
        """Write the index's WAL back into its file (a long import does it as it goes)."""
        key_index.checkpoint(self.index)

    def close(self) -> None:
        """Commit what the index holds open, write it back, then close both connections."""
        key_index.commit(self.index)
        key_index.checkpoint(self.index)
        self.index.close()
        self.con.close()


def open_store(database: Path, params: DedupParams, memory_limit: str = "2GB", index_cache_mb: int = 64) -> Store:
    """Open the store for writing and bring the dedup index level with the lake."""
    con = open_writer(database, memory_limit)
    store = Store(con, key_index.open_index(store_dir(database) / "index.sqlite", index_cache_mb), database)
    caught_up = catch_up_index(store, params)
    if caught_up:
        log.warning("dedup index caught up with %d article(s) stored by an interrupted run", caught_up)
    return store


def prepare(articles: Sequence[Article], params: DedupParams) -> list[Prepared]:
    """Compute the dedup features of a batch; pure, so it can run in a worker process."""
    sigs = signatures_of_normalised([normalise_text(a.text) for a in articles], params)
    return prepared_from(articles, sigs, params)


def prepared_from(articles: Sequence[Article], sigs: Sequence[tuple[int, ...] | None],
                  params: DedupParams) -> list[Prepared]:
    """Prepared records from articles and their signatures (band keys computed here, all at once)."""
    bands = iter(band_keys_many([s for s in sigs if s], params))
    return [Prepared(a, url_id(a.url), sig, tuple(next(bands)) if sig else ()) for a, sig in zip(articles, sigs)]


def store_articles(store: Store, batch: Sequence[Prepared], params: DedupParams, run_id: str,
                   queue_alerts: bool = True, also: Callable[[object], None] | None = None,
                   commit_index: bool = True) -> StoreResult:
    """Store the batch's new articles with their duplicate links; re-running it adds nothing.

    `also(con)` runs in the same lake transaction (e.g. the batch's fetch_log rows). commit_index=False
    leaves the index commit to a later batch or to Store.close(): the lake is committed either way,
    and an index left behind by a crash is caught up on the next open."""
    fresh = _unknown(store, batch)
    if not fresh:
        if also:
            with transaction(store.con):
                also(store.con)
        return StoreResult((), (), ())
    stored = _stored_candidates(store, fresh)
    base = key_index.last_seq(store.index)
    new = [_member(p, base + i + 1) for i, p in enumerate(fresh)]
    links = plan_links(new, stored, params)
    result = _result(new, stored, links)
    by_id = {l.article_id: l for l in links}
    new_ids = {m.id for m in new}
    with transaction(store.con):
        article_store.insert_articles(store.con, [_row(p, m.seq, by_id.get(p.id), run_id) for p, m in zip(fresh, new)])
        seq_of = {m.id: m.seq for m in stored}
        article_store.update_links(store.con, [{"id": l.article_id, "seq": seq_of[l.article_id],
                                                "duplicate_of": l.duplicate_of, "kind": l.kind,
                                                "similarity": l.similarity} for l in links if l.article_id not in new_ids])
        if queue_alerts:
            article_store.queue_for_alerts(store.con, result.new_stories)
        if also:
            also(store.con)
    key_index.add(store.index, *_keys(fresh), [(l.article_id, l.duplicate_of) for l in links], base + len(new),
                  [_member_row(m) for m in new], commit=commit_index)
    return result


def known(store: Store, urls: Iterable[str]) -> set[str]:
    """The URLs (canonical, or as a feed linked them) that are already stored."""
    ids = {url_id(u): u for u in urls}
    return {ids[k] for k in key_index.known_urls(store.index, list(ids))}


def catch_up_index(store: Store, params: DedupParams) -> int:
    """Add to the index what the lake holds beyond its last_seq; return the number of articles added."""
    added = 0
    for rows in article_store.stored_after(store.con, key_index.last_seq(store.index)):
        url_keys, hash_keys, bands, members = [], [], [], []
        for id_, seq, published_at, chash, sig, _dup, url, source_url in rows:
            url_keys += [(url_id(url), id_)] + ([(url_id(source_url), id_)] if source_url else [])
            hash_keys.append((hash_key(chash), id_))
            bands += [(k, id_) for k in band_keys(tuple(sig), params)] if sig else []
            members.append(_member_row(Member(id_, seq, published_at, chash, tuple(sig) if sig else None)))
        ids = [r[0] for r in rows]
        # Stored copies re-pointed to one of these rows were updated in the same lake commit.
        links = [(r[0], r[5]) for r in rows] + article_store.copies_of(store.con, ids)
        key_index.add(store.index, url_keys, hash_keys, bands, links, rows[-1][1], members)
        added += len(rows)
    return added


def _unknown(store: Store, batch: Sequence[Prepared]) -> list[Prepared]:
    """The batch without repeated URLs and URLs already stored, oldest first."""
    unique: dict[int, Prepared] = {}
    for p in batch:
        unique.setdefault(p.id, p)
    keys = list(unique) + [url_id(p.article.source_url) for p in unique.values() if p.article.source_url]
    seen = key_index.known_urls(store.index, keys)
    fresh = [p for p in unique.values()
             if p.id not in seen and not (p.article.source_url and url_id(p.article.source_url) in seen)]
    # Storage order decides ties between copies published at the same time: earliest first, then input order.
    return sorted(fresh, key=lambda p: (p.article.published_at is None, p.article.published_at or 0))


def _stored_candidates(store: Store, fresh: Sequence[Prepared]) -> list[Member]:
    """Stored articles sharing a content hash or a band key with the batch, with their whole clusters."""
    hits = key_index.candidates(store.index, sorted({k for p in fresh for k in p.bands}),
                                sorted({hash_key(p.article.content_hash) for p in fresh}))
    ids = key_index.clusters(store.index, hits)
    found = [Member(id=r[0], seq=r[1], published_at=_from_us(r[2]), content_hash=r[3],
                    signature=_unpack(r[4]), duplicate_of=r[5]) for r in key_index.members(store.index, ids)]
    # An index written before it kept member rows: those few are read from the lake.
    missing = sorted(set(ids) - {m.id for m in found})
    return found + [Member(id=r[0], seq=r[1], published_at=r[2], content_hash=r[3],
                           signature=tuple(r[4]) if r[4] else None, duplicate_of=r[5])
                    for r in article_store.members(store.con, missing)]


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _member_row(m: Member) -> tuple:
    """What the index keeps of an article for dedup planning, so planning never scans the lake."""
    published = None
    if m.published_at is not None:
        at = m.published_at if m.published_at.tzinfo else m.published_at.replace(tzinfo=timezone.utc)
        published = (at - _EPOCH) // timedelta(microseconds=1)
    blob = np.asarray(m.signature, dtype=np.uint32).tobytes() if m.signature else None
    return (m.id, m.seq, published, m.content_hash, blob)


def _from_us(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _unpack(blob: bytes | None) -> tuple[int, ...] | None:
    return tuple(np.frombuffer(blob, dtype=np.uint32).tolist()) if blob else None


def _member(p: Prepared, seq: int) -> Member:
    return Member(id=p.id, seq=seq, published_at=p.article.published_at, content_hash=p.article.content_hash,
                  signature=p.signature, duplicate_of=None, bands=p.bands or None)


def _keys(fresh: Sequence[Prepared]) -> tuple[list, list, list]:
    url_keys = [(p.id, p.id) for p in fresh]
    url_keys += [(url_id(p.article.source_url), p.id) for p in fresh if p.article.source_url]
    hash_keys = [(hash_key(p.article.content_hash), p.id) for p in fresh]
    bands = [(k, p.id) for p in fresh for k in p.bands]
    return url_keys, hash_keys, bands


def _row(p: Prepared, seq: int, link: Link | None, run_id: str) -> dict:
    a = p.article
    copy = link is not None and link.duplicate_of is not None
    return {"id": p.id, "seq": seq, "url": a.url, "source_url": a.source_url, "feed_url": a.feed_url,
            "title": a.title, "author": a.author, "published_at": a.published_at, "date_source": a.date_source,
            "fetched_at": a.fetched_at, "language": a.language, "text": a.text, "word_count": a.word_count,
            "description": a.description, "sitename": a.sitename, "extraction": a.extraction,
            "content_hash": a.content_hash, "signature": list(p.signature) if p.signature else None,
            "run_id": run_id, "duplicate_of": link.duplicate_of if copy else None,
            "duplicate_kind": link.kind if copy else None, "similarity": link.similarity if copy else None}


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
