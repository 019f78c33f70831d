"""What a kill trial compares with an uninterrupted run: the store the runs left, and what the receivers got.

A digest holds everything a user could see differ: the articles with their content and copy links,
the alert matches, the deliveries, the queue, the run records, and the two derived indexes (dedup
keys and full-text). Receivers are judged by the promise of docs/ALERTS-DELIVERY.md: each hit at
least once, and a repeat only for the delivery in flight when the run died, with the same bytes
and delivery id (webhook) or the same Message-ID and hits (email).
"""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tests.killsite import EMAIL, WEBHOOK, Mail, Webhook

# One kill leaves at most one delivery per channel sent but not marked: webhooks are sent and marked one
# by one, and an email's hits are marked in one commit (flows/delivery.py).
REPEATS_PER_KILL = 1


@dataclass(frozen=True)
class StoreDigest:
    """The parts of a store that a kill and a re-run must leave as an uninterrupted run does."""

    articles: tuple[tuple, ...]  # (url, content_hash, the original's url or None, duplicate_kind), by url
    matches: tuple[tuple[str, str], ...]  # (alert, url)
    deliveries: tuple[tuple, ...]  # (alert, url, channel, status, delivery_id)
    queued: int  # stories still waiting for the alert stage
    runs: tuple[str, ...]  # run statuses, oldest first
    seqs: tuple[int, int, int]  # (rows, distinct seqs, max seq): storage order has no gaps in meaning, no repeats
    index: tuple[int, int]  # dedup index: (last_seq, member rows)
    search_ids: tuple[int, ...]  # article ids in the full-text index, sorted, repeats kept
    ids: tuple[int, ...]  # article ids in the lake, sorted
    stray_files: tuple[str, ...]  # files in the lake folder the catalog does not know, or leftovers (tmp/, *.new)
    missing_files: tuple[str, ...]  # files the catalog lists that are not on disk


def digest(database: Path) -> StoreDigest:
    """Read a (closed) store: the lake through newsmon's reader, the indexes and the folder directly."""
    from storage.db import open_reader

    con = open_reader(database)
    try:
        articles = con.execute("""SELECT a.url, a.content_hash, o.url, a.duplicate_kind FROM articles a
            LEFT JOIN articles o ON o.id = a.duplicate_of ORDER BY a.url""").fetchall()
        matches = con.execute("""SELECT m.alert, a.url FROM alert_matches m JOIN articles a ON a.id = m.article_id
            ORDER BY ALL""").fetchall()
        deliveries = con.execute("""SELECT d.alert, a.url, d.channel, d.status, d.delivery_id FROM deliveries d
            JOIN articles a ON a.id = d.article_id ORDER BY ALL""").fetchall()
        queued = con.execute("SELECT count(*) FROM alert_queue").fetchone()[0]
        runs = con.execute("SELECT status FROM runs ORDER BY started_at").fetchall()
        seqs = con.execute("SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0) FROM articles").fetchone()
        ids = sorted(r[0] for r in con.execute("SELECT id FROM articles").fetchall())
    finally:
        con.close()
    lake = database.with_suffix(".lake")
    stray, missing = _files_against_catalog(lake)
    return StoreDigest(tuple(articles), tuple(matches), tuple(deliveries), queued, tuple(r[0] for r in runs),
                       tuple(seqs), _dedup_index(lake / "index.sqlite"), _search_ids(database), tuple(ids),
                       stray, missing)


def _dedup_index(path: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        last = con.execute("SELECT value FROM meta WHERE name = 'last_seq'").fetchone()
        members = con.execute("SELECT count(*) FROM members").fetchone()[0]
    con.close()
    return (last[0] if last else 0, members)


def _search_ids(database: Path) -> tuple[int, ...]:
    import tantivy

    from flows.search import index_path
    from search.index import SearchIndex

    searcher = SearchIndex.open_reader(index_path(database)).searcher()
    found = searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1) + 10, count=False).hits
    return tuple(sorted(searcher.fast_field_values("id", [address for _, address in found]))) if found else ()


def _files_against_catalog(lake: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Upkeep's contract after a completed run: every file in data/ is one the catalog lists, and nothing is
    left in tmp/ or half-written (*.new)."""
    with sqlite3.connect(f"file:{lake / 'catalog.sqlite'}?mode=ro", uri=True) as catalog:
        known = {Path(r[0]).name for r in catalog.execute(
            "SELECT path FROM ducklake_data_file UNION ALL SELECT path FROM ducklake_delete_file")}
    catalog.close()
    on_disk = {p.name: p for p in (lake / "data").rglob("*") if p.is_file()}
    stray = {str(p.relative_to(lake)) for name, p in on_disk.items() if name not in known}
    stray |= {str(p.relative_to(lake)) for p in lake.rglob("*")
              if p.is_file() and (p.relative_to(lake).parts[0] == "tmp" or p.name.endswith(".new"))}
    return tuple(sorted(stray)), tuple(sorted(known - set(on_disk)))


def store_problems(reference: StoreDigest, found: StoreDigest) -> list[str]:
    """How the store after a kill and a re-run differs from the uninterrupted run's; empty when it does not."""
    problems = []
    urls = [a[0] for a in found.articles]
    if len(urls) != len(set(urls)):
        problems.append(f"{len(urls) - len(set(urls))} article URL(s) stored twice")
    if found.articles != reference.articles:
        problems.append(_difference("articles (url, hash, original, kind)", reference.articles, found.articles))
    if found.matches != reference.matches:
        problems.append(_difference("alert matches", reference.matches, found.matches))
    if found.deliveries != reference.deliveries:
        problems.append(_difference("deliveries (alert, url, channel, status, id)", reference.deliveries,
                                    found.deliveries))
    if found.queued:
        problems.append(f"{found.queued} stories still queued for alerts")
    if not found.runs or found.runs[-1] != "completed" or "running" in found.runs:
        problems.append(f"run records {list(found.runs)}: the last run is not completed or one is left running")
    rows, distinct, top = found.seqs
    if rows != distinct:
        problems.append(f"{rows - distinct} repeated seq value(s)")
    if found.index != (top, rows):
        problems.append(f"dedup index (last_seq, members) {found.index}, lake has ({top}, {rows})")
    if found.search_ids != found.ids:
        problems.append(f"full-text index holds {len(found.search_ids)} documents "
                        f"({len(set(found.search_ids))} distinct ids) for {len(found.ids)} articles")
    if found.stray_files:
        problems.append(f"files the catalog does not know: {list(found.stray_files)[:5]}")
    if found.missing_files:
        problems.append(f"files the catalog lists but the disk lacks: {list(found.missing_files)[:5]}")
    return problems


def _difference(what: str, expected: Sequence, found: Sequence) -> str:
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    return f"{what} differ: {len(missing)} missing (e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})"


def webhook_problems(reference: StoreDigest, received: Sequence[Webhook],
                     allowed: int = REPEATS_PER_KILL) -> tuple[list[str], int]:
    """Problems with the webhook POSTs received over a kill and its re-run, and how many were repeats."""
    expected = {d[4] for d in reference.deliveries if d[2] == WEBHOOK}
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for hook in received:
        bodies[hook.delivery_id].add(hook.body)
    repeats = len(received) - len(bodies)
    problems = []
    if expected - set(bodies):
        problems.append(f"{len(expected - set(bodies))} webhook hit(s) never delivered")
    if set(bodies) - expected:
        problems.append(f"{len(set(bodies) - expected)} webhook delivery id(s) the uninterrupted run does not have")
    changed = [i for i, b in bodies.items() if len(b) > 1]
    if changed:
        problems.append(f"{len(changed)} webhook delivery id(s) resent with different bytes")
    if repeats > allowed:
        problems.append(f"{repeats} webhook repeats, at most {allowed} documented")
    return problems, repeats


def mail_problems(reference: StoreDigest, received: Sequence[Mail], allowed: int = REPEATS_PER_KILL,
                  ) -> tuple[list[str], int]:
    """Problems with the emails received over a kill and its re-run, and how many messages were repeats."""
    expected = {d[1] for d in reference.deliveries if d[2] == EMAIL}
    by_id: dict[str, set[frozenset[str]]] = defaultdict(set)
    for mail in received:
        by_id[mail.message_id].add(mail.urls)
    repeats = len(received) - len(by_id)
    mailed = [url for hits in by_id.values() for url in next(iter(hits))]
    problems = []
    if expected - set(mailed):
        problems.append(f"{len(expected - set(mailed))} email hit(s) never sent")
    if set(mailed) - expected:
        problems.append(f"{len(set(mailed) - expected)} emailed article(s) that are not hits")
    if len(mailed) != len(set(mailed)):
        problems.append("a hit was mailed again under another Message-ID")
    if any(len(hits) > 1 for hits in by_id.values()):
        problems.append("one Message-ID was sent with different hits")
    if repeats > allowed:
        problems.append(f"{repeats} email repeats, at most {allowed} documented")
    return problems, repeats
