"""The dedup key index behind one interface: index.sqlite for one machine, PostgreSQL for several.

flows/persist.py asks the same questions of either. The SQLite index belongs to the single writer
(writer.lock), so its locks and claims are no-ops; the PostgreSQL one (storage/pgkeys.py) takes
real locks and claims because several writers share it.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol, Sequence

from . import index


class KeyIndex(Protocol):
    """What the store stage asks of the dedup keys."""

    shared: bool  # several writers: the store step is taken in turn, deliveries are claimed
    damaged: str | None  # why the keys had to be started over (then rebuilt from the lake), or None

    def exclusive(self, name: str = "store"): ...
    def last_seq(self) -> int: ...
    def known_urls(self, keys: Sequence[int]) -> set[int]: ...
    def candidates(self, band_keys: Mapping[int, Sequence[int]], hash_keys: Sequence[int]) -> set[int]: ...
    def clusters(self, ids: Iterable[int]) -> set[int]: ...
    def members(self, ids: Iterable[int]) -> list[tuple]: ...
    def add(self, url_keys, hash_keys, band_keys, links, seq: int, member_rows=(), commit: bool = True) -> None: ...
    def commit(self) -> None: ...
    def checkpoint(self) -> None: ...
    def claim_delivery(self, alert: str, article_id: int, channel: str) -> bool: ...
    def release_delivery(self, alert: str, article_id: int, channel: str, done: bool) -> None: ...
    def close(self) -> None: ...


class SqliteKeys:
    """index.sqlite beside the lake (storage/index.py), for the single writer of a one-machine store."""

    shared = False

    def __init__(self, path: Path, cache_mb: int = 64, layout: int = 0) -> None:
        """Open index.sqlite; a damaged one is discarded first (`damaged` says why) and rebuilt by the caller."""
        self.damaged = index.damage(path)
        if self.damaged:
            index.discard(path)
        self.con: sqlite3.Connection = index.open_index(path, cache_mb, layout)

    @contextmanager
    def exclusive(self, name: str = "store") -> Iterator[None]:
        """Nothing to take: writer.lock already makes this process the only writer."""
        yield

    def last_seq(self) -> int:
        return index.last_seq(self.con)

    def known_urls(self, keys: Sequence[int]) -> set[int]:
        return index.known_urls(self.con, keys)

    def candidates(self, band_keys: Mapping[int, Sequence[int]], hash_keys: Sequence[int]) -> set[int]:
        return index.candidates(self.con, band_keys, hash_keys)

    def clusters(self, ids: Iterable[int]) -> set[int]:
        return index.clusters(self.con, ids)

    def members(self, ids: Iterable[int]) -> list[tuple]:
        return index.members(self.con, ids)

    def add(self, url_keys, hash_keys, band_keys, links, seq: int, member_rows=(), commit: bool = True) -> None:
        index.add(self.con, url_keys, hash_keys, band_keys, links, seq, member_rows, commit=commit)

    def commit(self) -> None:
        index.commit(self.con)

    def checkpoint(self) -> None:
        index.checkpoint(self.con)

    def claim_delivery(self, alert: str, article_id: int, channel: str) -> bool:
        return True  # the only writer

    def release_delivery(self, alert: str, article_id: int, channel: str, done: bool) -> None:
        pass

    def close(self) -> None:
        index.commit(self.con)
        index.checkpoint(self.con)
        self.con.close()
