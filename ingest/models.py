"""Plain records passed between newsmon's stages (stdlib only)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# fetch_log.outcome vocabulary (a stable, user-queried contract).
OK = "ok"
NOT_MODIFIED = "not_modified"
HTTP_ERROR = "http_error"
TIMEOUT = "timeout"
NETWORK_ERROR = "network_error"
TOO_LARGE = "too_large"
NOT_HTML = "not_html"
PARSE_ERROR = "parse_error"
BLOCKED = "blocked"
OUTCOMES = (OK, NOT_MODIFIED, HTTP_ERROR, TIMEOUT, NETWORK_ERROR, TOO_LARGE, NOT_HTML, PARSE_ERROR, BLOCKED)


@dataclass(frozen=True)
class FetchPolicy:
    """How newsmon talks to the web; built from the [fetch] config table."""

    timeout_s: float = 15.0
    connect_timeout_s: float = 5.0
    max_bytes: int = 5_000_000
    user_agent: str = "newsmon/0.1"
    allow_private_networks: bool = False
    concurrency: int = 16
    per_host: int = 2
    per_host_delay_s: float = 0.0
    retries: int = 2
    backoff_s: float = 0.5
    max_retry_after_s: float = 30.0
    max_redirects: int = 5
    respect_robots: bool = True


@dataclass(frozen=True)
class FeedSource:
    """A feed to poll, with the validators remembered from its last 200 answer."""

    url: str
    name: str | None = None
    tags: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    # Found on a third-party page (site discovery, another origin than the configured site):
    # fetched through the SSRF guard, like an article link.
    guarded: bool = False
    # What to request when it differs from `url`: a configured URL holding a ${VAR} secret is
    # stored, logged and shown as `url` (the secret redacted) and requested as `fetch_url`.
    fetch_url: str | None = None


@dataclass(frozen=True)
class FetchAttempt:
    """One HTTP attempt; becomes one fetch_log row."""

    at: datetime
    url: str
    kind: str  # 'feed' | 'article' | 'robots'
    status: int | None
    outcome: str
    error: str | None
    elapsed_ms: int
    bytes: int


@dataclass(frozen=True)
class FeedResponse:
    """What fetching a feed gave: body bytes on OK, nothing on any other outcome."""

    source: FeedSource
    outcome: str
    status: int | None
    body: bytes | None
    final_url: str
    etag: str | None = None
    last_modified: str | None = None
    content_type: str | None = None
    error: str | None = None
    attempts: tuple[FetchAttempt, ...] = ()


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, independent of the feed's format."""

    feed_url: str
    guid: str | None
    url: str
    title: str | None
    published: datetime | None
    summary: str | None
    author: str | None = None


@dataclass(frozen=True)
class FetchedPage:
    """An article page download; body is set only when outcome is OK."""

    entry: FeedEntry
    outcome: str
    status: int | None
    final_url: str
    body: bytes | None
    content_type: str | None
    fetched_at: datetime
    error: str | None = None
    attempts: tuple[FetchAttempt, ...] = ()


@dataclass(frozen=True)
class Article:
    """An extracted article ready to store (url is canonical)."""

    url: str
    feed_url: str
    title: str | None
    author: str | None
    published_at: datetime | None
    date_source: str | None  # 'feed' | 'page' | None
    fetched_at: datetime
    language: str | None
    text: str
    content_hash: str
    extraction: str  # 'trafilatura' | 'feed_summary'
    source_url: str  # the link as the feed gave it
    word_count: int = 0
    description: str | None = None
    sitename: str | None = None


@dataclass(frozen=True)
class AlertHit:
    """An article that matched an alert rule, with what matched and where."""

    alert: str
    article_id: int
    url: str
    title: str | None
    feed_url: str
    published_at: datetime | None
    matched_terms: tuple[str, ...]
    snippet: str  # plain text, matched terms wrapped in **...**
    snippet_html: str = ""  # HTML-escaped, matched terms wrapped in <mark>...</mark>
