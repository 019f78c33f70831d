"""Which feeds a shard reads: `newsmon run --shard K/N` takes the feeds whose stable hash mod N is K-1."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

from ingest.models import FeedSource

_LABEL = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard K of N (1 <= K <= N)."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"

    def holds(self, feed_url: str) -> bool:
        """True when this shard reads the feed."""
        return shard_of(feed_url, self.n) == self.k


def parse_shard(label: str) -> Shard:
    """'K/N' -> Shard; raises ValueError with a readable message."""
    match = _LABEL.match(label or "")
    if not match:
        raise ValueError(f"--shard must be K/N (e.g. 2/4), got {label!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n or n > 10_000:
        raise ValueError(f"--shard K/N needs 1 <= K <= N <= 10000, got {label!r}")
    return Shard(k, n)


def shard_of(feed_url: str, n: int) -> int:
    """The shard (1..n) of a feed URL: a hash stable across machines, processes and Python versions
    (Python's hash() is salted per process, so it would send a feed to a different shard each run)."""
    digest = hashlib.sha256(feed_url.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def select(sources: Sequence[FeedSource], shard: Shard | None) -> list[FeedSource]:
    """The sources this shard reads (all of them without a shard)."""
    return list(sources) if shard is None else [s for s in sources if shard.holds(s.url)]
