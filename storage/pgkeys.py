"""The dedup keys and the claims of a shared lake, in PostgreSQL (schema `newsmon_keys`).

With several writers the questions the SQLite index answers for one writer (is this URL stored?
which stored articles share a band key?) need real constraints and locks, which PostgreSQL has:

- the same tables as index.sqlite, with PRIMARY KEYs, so a key can exist once whatever happens;
- `exclusive("store")`: one transaction holding a transaction-level advisory lock, in which a
  writer checks its batch against the keys, commits it to the lake and then adds its keys. Writers
  fetch and extract in parallel; only this short step is taken in turn, so every link is planned
  against everything stored. The lock ends with the transaction, or with the session when its
  process dies (even on SIGKILL): there is never a stale lock to clear;
- `writers`: each open store registers itself and holds an advisory lock on its id for as long as
  its session lives, which tells the others whether a claim's owner is still alive;
- `delivery_claims`: one row per (alert, article, channel) with INSERT ... ON CONFLICT, so only one
  worker sends a hit; a claim whose owner died is taken over.
"""
from __future__ import annotations

import os
import socket
import zlib
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping, Sequence

import psycopg

SCHEMA = "newsmon_keys"
# Advisory lock keys are (namespace, id) pairs of int4; these namespaces are newsmon's.
_LOCKS = 0x4E4D0001  # named locks below
_WRITERS = 0x4E4D0002  # one per live writer session: its id in `writers`
_RUNS = 0x4E4D0003  # one per running ingest scope (a shard, or all feeds)
_NAMED = {"migrate": 1, "store": 2, "alerts": 3, "maintenance": 4}

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.url_keys (key bigint PRIMARY KEY, article_id bigint NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.hash_keys (key bigint NOT NULL, article_id bigint NOT NULL,
                                               PRIMARY KEY (key, article_id));
CREATE TABLE IF NOT EXISTS {SCHEMA}.band_keys (bucket integer NOT NULL, key bigint NOT NULL,
                                               article_id bigint NOT NULL, PRIMARY KEY (bucket, key, article_id));
CREATE TABLE IF NOT EXISTS {SCHEMA}.copies (article_id bigint PRIMARY KEY, root bigint NOT NULL);
CREATE INDEX IF NOT EXISTS copies_root ON {SCHEMA}.copies (root);
CREATE TABLE IF NOT EXISTS {SCHEMA}.members (article_id bigint PRIMARY KEY, seq bigint NOT NULL UNIQUE,
                                             published_us bigint, content_hash text NOT NULL, signature bytea,
                                             bucket integer);
CREATE TABLE IF NOT EXISTS {SCHEMA}.meta (name text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.writers (id serial PRIMARY KEY, run_id text, host text, pid integer,
                                             started_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS {SCHEMA}.delivery_claims (
    alert text NOT NULL, article_id bigint NOT NULL, channel text NOT NULL,
    writer integer NOT NULL,
    state text NOT NULL CHECK (state IN ('sending', 'open', 'done')),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert, article_id, channel));
"""
# A writer is alive while its session holds the advisory lock on its id.
_ALIVE = f"""EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
                    AND classid = {_WRITERS} AND objid = {{writer}}::oid
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"""


def connect(conninfo: str) -> psycopg.Connection:
    """An autocommit session (statements outside `transaction()` commit at once)."""
    return psycopg.connect(conninfo, autocommit=True, application_name="newsmon")


@contextmanager
def session_lock(conninfo: str, name: str) -> Iterator[None]:
    """Hold a named newsmon lock on a short session of its own (e.g. while the lake is created)."""
    with connect(conninfo) as con:
        con.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCKS, _NAMED[name]])
        yield


def _scope_key(scope: str) -> tuple[int, int]:
    return (_LOCKS, _NAMED[scope]) if scope in _NAMED else (_RUNS, zlib.crc32(scope.encode()) & 0x7FFFFFFF)


class PgKeys:
    """The KeyIndex of a shared lake (see storage/keys.py for the interface)."""

    shared = True
    damaged = None  # PostgreSQL keeps its tables whole; keys computed otherwise are forgotten, not damaged

    def __init__(self, conninfo: str, run_id: str | None = None, layout: int = 0) -> None:
        self.con = connect(conninfo)
        with self.con.transaction():
            self.con.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCKS, _NAMED["migrate"]])
            self.con.execute(_DDL)
            # Keys computed with other dedup settings are forgotten, then rebuilt from the lake.
            found = self.con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE name = 'layout'").fetchone()
            if found is None or found[0] != layout:
                for table in ("url_keys", "hash_keys", "band_keys", "copies", "members", "meta"):
                    self.con.execute(f"DELETE FROM {SCHEMA}.{table}")
                self.con.execute(f"INSERT INTO {SCHEMA}.meta VALUES ('layout', %s)", [layout])
        row = self.con.execute(f"INSERT INTO {SCHEMA}.writers (run_id, host, pid) VALUES (%s, %s, %s) RETURNING id",
                               [run_id, socket.gethostname(), os.getpid()]).fetchone()
        self.writer = row[0]
        self.con.execute("SELECT pg_advisory_lock(%s, %s)", [_WRITERS, self.writer])

    # -- locks ----------------------------------------------------------------------
    @contextmanager
    def exclusive(self, name: str = "store") -> Iterator[None]:
        """One transaction holding the named lock: writers take this step in turn."""
        with self.con.transaction():
            self.con.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCKS, _NAMED[name]])
            yield

    def try_lock(self, scope: str) -> bool:
        """Take the lock of a run scope (a shard label, or a named lock) for this session; False if held."""
        return bool(self.con.execute("SELECT pg_try_advisory_lock(%s, %s)", list(_scope_key(scope))).fetchone()[0])

    def unlock(self, scope: str) -> None:
        """Give back a lock taken with try_lock."""
        self.con.execute("SELECT pg_advisory_unlock(%s, %s)", list(_scope_key(scope)))

    # -- dedup keys -----------------------------------------------------------------
    def last_seq(self) -> int:
        """The highest article seq the keys cover (0 when empty)."""
        row = self.con.execute(f"SELECT value FROM {SCHEMA}.meta WHERE name = 'last_seq'").fetchone()
        return row[0] if row else 0

    def known_urls(self, keys: Sequence[int]) -> set[int]:
        """The URL keys (canonical or as-linked) already stored."""
        if not keys:
            return set()
        return {r[0] for r in self.con.execute(f"SELECT key FROM {SCHEMA}.url_keys WHERE key = ANY(%s)", [list(keys)])}

    def candidates(self, band_keys: Mapping[int, Sequence[int]], hash_keys: Sequence[int]) -> set[int]:
        """Articles sharing a content-hash key, or an LSH band key in the given bucket, with the probe."""
        found = {r[0] for r in self.con.execute(f"SELECT article_id FROM {SCHEMA}.hash_keys WHERE key = ANY(%s)",
                                                [list(hash_keys)])}
        for bucket, keys in band_keys.items():
            found.update(r[0] for r in self.con.execute(
                f"SELECT article_id FROM {SCHEMA}.band_keys WHERE bucket = %s AND key = ANY(%s)", [bucket, list(keys)]))
        return found

    def clusters(self, ids: Iterable[int]) -> set[int]:
        """The given articles plus every member of their clusters (original and copies)."""
        ids = list(ids)
        if not ids:
            return set()
        linked = dict(self.con.execute(f"SELECT article_id, root FROM {SCHEMA}.copies WHERE article_id = ANY(%s)",
                                       [ids]).fetchall())
        roots = (set(ids) - set(linked)) | set(linked.values())
        members = {r[0] for r in self.con.execute(f"SELECT article_id FROM {SCHEMA}.copies WHERE root = ANY(%s)",
                                                  [sorted(roots)])}
        return roots | members | set(ids)

    def members(self, ids: Iterable[int]) -> list[tuple]:
        """(id, seq, published_us, content_hash, signature bytes, root or None, bucket) of the given articles."""
        ids = list(ids)
        if not ids:
            return []
        rows = self.con.execute(f"""SELECT m.article_id, m.seq, m.published_us, m.content_hash, m.signature, c.root,
                   m.bucket
            FROM {SCHEMA}.members m LEFT JOIN {SCHEMA}.copies c USING (article_id)
            WHERE m.article_id = ANY(%s)""", [ids]).fetchall()
        return [(r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None, r[5], r[6]) for r in rows]

    def add(self, url_keys: Sequence[tuple[int, int]], hash_keys: Sequence[tuple[int, int]],
            band_keys: Sequence[tuple[int, int, int]], links: Sequence[tuple[int, int | None]], seq: int,
            member_rows: Sequence[tuple] = (), commit: bool = True) -> None:
        """Record keys, member rows and cluster links up to `seq` (in the open exclusive() transaction
        if there is one: then they commit with it). `commit` is for the SQLite index's batching."""
        with self.con.transaction():
            if band_keys:
                self.con.execute(f"""INSERT INTO {SCHEMA}.band_keys (bucket, key, article_id)
                    SELECT * FROM unnest(%s::integer[], %s::bigint[], %s::bigint[]) ON CONFLICT DO NOTHING""",
                                 [list(c) for c in zip(*band_keys)])
            for table, pairs in (("url_keys", url_keys), ("hash_keys", hash_keys)):
                if pairs:
                    self.con.execute(f"""INSERT INTO {SCHEMA}.{table} (key, article_id)
                        SELECT * FROM unnest(%s::bigint[], %s::bigint[]) ON CONFLICT DO NOTHING""",
                                     [[k for k, _ in pairs], [a for _, a in pairs]])
            if member_rows:
                columns = list(zip(*member_rows))
                self.con.execute(f"""INSERT INTO {SCHEMA}.members
                    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::bytea[],
                                         %s::integer[])
                    ON CONFLICT DO NOTHING""", [list(c) for c in columns])
            originals = [i for i, root in links if root is None]
            copies = [(i, root) for i, root in links if root is not None]
            if originals:
                self.con.execute(f"DELETE FROM {SCHEMA}.copies WHERE article_id = ANY(%s)", [originals])
            if copies:
                self.con.execute(f"""INSERT INTO {SCHEMA}.copies SELECT * FROM unnest(%s::bigint[], %s::bigint[])
                    ON CONFLICT (article_id) DO UPDATE SET root = EXCLUDED.root""",
                                 [[i for i, _ in copies], [r for _, r in copies]])
            self.con.execute(f"""INSERT INTO {SCHEMA}.meta VALUES ('last_seq', %s)
                ON CONFLICT (name) DO UPDATE SET value = greatest({SCHEMA}.meta.value, EXCLUDED.value)""", [seq])

    def commit(self) -> None:
        """Nothing is left open between batches in PostgreSQL."""

    def checkpoint(self) -> None:
        """PostgreSQL checkpoints by itself."""

    def reset(self) -> None:
        """Forget every key (they are then rebuilt from the lake)."""
        with self.con.transaction():
            for table in ("url_keys", "hash_keys", "band_keys", "copies", "members"):
                self.con.execute(f"DELETE FROM {SCHEMA}.{table}")
            self.con.execute(f"DELETE FROM {SCHEMA}.meta WHERE name = 'last_seq'")

    # -- delivery claims ------------------------------------------------------------
    def claim_delivery(self, alert: str, article_id: int, channel: str) -> bool:
        """Take the right to send this hit to this channel now: False if another live worker holds it
        or it is done. A claim left 'sending' by a dead worker is taken over."""
        row = self.con.execute(f"""
            INSERT INTO {SCHEMA}.delivery_claims AS c (alert, article_id, channel, writer, state)
            VALUES (%s, %s, %s, %s, 'sending')
            ON CONFLICT (alert, article_id, channel) DO UPDATE
                SET writer = EXCLUDED.writer, state = 'sending', claimed_at = now()
                WHERE c.state = 'open' OR (c.state = 'sending' AND NOT {_ALIVE.format(writer='c.writer')})
            RETURNING 1""", [alert, article_id, channel, self.writer]).fetchone()
        return row is not None

    def release_delivery(self, alert: str, article_id: int, channel: str, done: bool) -> None:
        """After the try is recorded in the lake: 'done' (sent, or failed for good) or open for a later run."""
        self.con.execute(f"""UPDATE {SCHEMA}.delivery_claims SET state = %s
                             WHERE alert = %s AND article_id = %s AND channel = %s AND writer = %s""",
                         ["done" if done else "open", alert, article_id, channel, self.writer])

    def close(self) -> None:
        """End the session: its locks go with it."""
        self.con.close()
