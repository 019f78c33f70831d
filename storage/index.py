"""SQL for the dedup index: a SQLite file of B-tree keys beside the lake.

Every dedup question a batch asks (is this URL stored? which articles share this content hash or
this LSH band key? which cluster is that article in?) is a B-tree probe here, so it costs about the
same at 1,000 or 10 million stored articles and needs no memory beyond SQLite's page cache. The lake
stays the source of truth: `last_seq` says how far the index has caught up, and a run that was
killed between the lake commit and the index commit is caught up from the lake on the next open.

LSH band keys (32 per article) lead with a time bucket: new keys land in the few recent buckets,
whose pages stay in the cache, instead of in random pages of the whole history (at a million
articles, random keys made each insert a cache miss and each commit a rewrite of scattered pages).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .damage import sqlite_damage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS url_keys (key INTEGER PRIMARY KEY, article_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hash_keys (key INTEGER NOT NULL, article_id INTEGER NOT NULL,
                                      PRIMARY KEY (key, article_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS band_keys (bucket INTEGER NOT NULL, key INTEGER NOT NULL, article_id INTEGER NOT NULL,
                                      PRIMARY KEY (bucket, key, article_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS copies (article_id INTEGER PRIMARY KEY, root INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS copies_root ON copies (root);
CREATE TABLE IF NOT EXISTS members (article_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, published_us INTEGER,
                                    content_hash TEXT NOT NULL, signature BLOB, bucket INTEGER);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_IDS = "SELECT value FROM json_each(?)"
_TABLES = ("url_keys", "hash_keys", "band_keys", "copies", "members", "meta")
SCHEMA_VERSION = 2  # 2: band keys lead with a time bucket
# The leading key of each table's B-tree (damage() reads both ends of each).
_KEYS = {"url_keys": "key", "hash_keys": "key", "band_keys": "bucket", "copies": "article_id",
         "members": "article_id", "meta": "name"}


def damage(path: Path) -> str | None:
    """Why an existing index file cannot be used (truncated, overwritten, unreadable), or None.

    The index is derived from the lake: a damaged one is discarded and rebuilt, never repaired."""
    if not path.exists():
        return None
    reason = sqlite_damage(path)
    if reason is not None:
        return reason
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for table, key in _KEYS.items():  # each B-tree's first and last leaves: where a cut file shows
                con.execute(f"SELECT * FROM (SELECT {key} FROM {table} ORDER BY {key} LIMIT 1), "
                            f"(SELECT {key} FROM {table} ORDER BY {key} DESC LIMIT 1)").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc) or "no such column" in str(exc):
            return None  # an older or partial schema: open_index starts it over without calling it damage
        return str(exc)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def discard(path: Path) -> None:
    """Delete the index file and its WAL, so the next open starts an empty one."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        path.with_name(name).unlink(missing_ok=True)


def open_index(path: Path, cache_mb: int = 64, layout: int = 0) -> sqlite3.Connection:
    """Open (creating it) the index file; the page cache is bounded to cache_mb.

    `layout` names what the keys were computed with (dedup settings that change band keys or
    buckets): an index of another schema or layout is emptied, and the caller rebuilds it from the
    lake (see last_seq)."""
    con = _connect(path, cache_mb)
    if not _matches(con, layout):
        con.executescript("".join(f"DROP TABLE IF EXISTS {t};" for t in _TABLES))
        con.executescript(_SCHEMA)
        con.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", SCHEMA_VERSION), ("layout", layout)])
    return con


def _matches(con: sqlite3.Connection, layout: int) -> bool:
    has_meta = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
    if not has_meta:
        return False
    found = dict(con.execute("SELECT name, value FROM meta WHERE name IN ('schema', 'layout')").fetchall())
    return found == {"schema": SCHEMA_VERSION, "layout": layout}


def _connect(path: Path, cache_mb: int) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash may lose the last commit, never corrupt
    # No checkpoint per commit: with random keys each one rewrote ~800 scattered pages of a 1.6 GB file
    # and synced it (a run of 1,810 pages crawled at 4 pages/s at 1M articles). Commits only append
    # to the WAL; checkpoint() writes the pages back once, when the store is closed.
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
    return con


def last_seq(con: sqlite3.Connection) -> int:
    """The highest article seq the index holds keys for (0 when empty)."""
    row = con.execute("SELECT value FROM meta WHERE name = 'last_seq'").fetchone()
    return row[0] if row else 0


def known_urls(con: sqlite3.Connection, keys: Sequence[int]) -> set[int]:
    """The URL keys (canonical or as-linked) already stored."""
    if not keys:
        return set()
    return {r[0] for r in con.execute(f"SELECT key FROM url_keys WHERE key IN ({_IDS})", [json.dumps(list(keys))])}


def candidates(con: sqlite3.Connection, band_keys: Mapping[int, Sequence[int]], hash_keys: Sequence[int]) -> set[int]:
    """Articles sharing a content-hash key, or an LSH band key in the given bucket, with the probe.

    band_keys: bucket -> the band keys to look for in it."""
    found = {r[0] for r in con.execute(f"SELECT article_id FROM hash_keys WHERE key IN ({_IDS})",
                                       [json.dumps(list(hash_keys))])}
    for bucket, keys in band_keys.items():
        found.update([r for (r,) in con.execute(
            f"SELECT DISTINCT article_id FROM band_keys WHERE bucket = ? AND key IN ({_IDS})",
            [bucket, json.dumps(list(keys))]).fetchall()])
    return found


def clusters(con: sqlite3.Connection, ids: Iterable[int]) -> set[int]:
    """The given articles plus every member of their clusters (original and copies)."""
    ids = list(ids)
    if not ids:
        return set()
    roots = set(ids) - {r[0] for r in con.execute(f"SELECT article_id FROM copies WHERE article_id IN ({_IDS})",
                                                  [json.dumps(ids)])}
    roots |= {r[0] for r in con.execute(f"SELECT root FROM copies WHERE article_id IN ({_IDS})", [json.dumps(ids)])}
    members = {r[0] for r in con.execute(f"SELECT article_id FROM copies WHERE root IN ({_IDS})",
                                         [json.dumps(sorted(roots))])}
    return roots | members | set(ids)


def members(con: sqlite3.Connection, ids: Iterable[int]) -> list[tuple]:
    """(id, seq, published_us, content_hash, signature blob, root or None, bucket) of the given articles."""
    ids = list(ids)
    if not ids:
        return []
    return con.execute(f"""SELECT m.article_id, m.seq, m.published_us, m.content_hash, m.signature, c.root, m.bucket
        FROM members m LEFT JOIN copies c USING (article_id) WHERE m.article_id IN ({_IDS})""",
                       [json.dumps(ids)]).fetchall()


def add(con: sqlite3.Connection, url_keys: Sequence[tuple[int, int]], hash_keys: Sequence[tuple[int, int]],
        band_keys: Iterable[tuple[int, int, int]], links: Sequence[tuple[int, int | None]], seq: int,
        member_rows: Sequence[tuple] = (), commit: bool = True) -> None:
    """Record keys (band_keys: bucket, key, article id), what dedup planning reads of each article
    (member_rows: id, seq, published_us, content_hash, signature blob, bucket) and cluster links (root None:
    an original) up to `seq`.

    commit=False leaves the transaction open, so the next add() joins it: a bulk import commits every
    few chunks, because each commit writes every B-tree page its random keys touched."""
    if not con.in_transaction:
        con.execute("BEGIN")
    try:
        con.executemany("INSERT OR IGNORE INTO url_keys VALUES (?, ?)", url_keys)
        con.executemany("INSERT OR IGNORE INTO hash_keys VALUES (?, ?)", hash_keys)
        con.executemany("INSERT OR IGNORE INTO band_keys VALUES (?, ?, ?)", band_keys)
        con.executemany("INSERT OR IGNORE INTO members VALUES (?, ?, ?, ?, ?, ?)", member_rows)
        con.executemany("DELETE FROM copies WHERE article_id = ?", [(i,) for i, root in links if root is None])
        con.executemany("INSERT OR REPLACE INTO copies VALUES (?, ?)",
                        [(i, root) for i, root in links if root is not None])
        con.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', max(?, coalesce("
                    "(SELECT value FROM meta WHERE name = 'last_seq'), 0)))", [seq])
        if commit:
            con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def commit(con: sqlite3.Connection) -> None:
    """Commit what add(commit=False) left open."""
    if con.in_transaction:
        con.execute("COMMIT")


def checkpoint(con: sqlite3.Connection) -> None:
    """Write the WAL back into the index file and empty it."""
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def open_index_reader(path: Path) -> sqlite3.Connection:
    """Open the index for lookups only (a reader beside a running writer: WAL lets both go on)."""
    con = sqlite3.connect(path, check_same_thread=False)
    con.execute("PRAGMA query_only=1")
    return con


def copies_among(con: sqlite3.Connection, ids: Sequence[int]) -> set[int]:
    """The articles among `ids` that are copies of another article."""
    if not ids:
        return set()
    return {r[0] for r in con.execute(f"SELECT article_id FROM copies WHERE article_id IN ({_IDS})",
                                      [json.dumps(list(ids))])}
