"""Feed bytes -> FeedEntry records, with feedparser; pure (never touches the network or disk)."""
from __future__ import annotations

import calendar
import io
from dataclasses import dataclass
from datetime import datetime, timezone

import feedparser

from .models import FeedEntry
from .urls import canonical_url


@dataclass(frozen=True)
class ParsedFeed:
    """Entries plus what feedparser had to say about the document."""

    entries: tuple[FeedEntry, ...]
    title: str | None
    version: str
    warning: str | None  # feedparser's bozo exception text, when it recovered from bad markup


# What feedparser flags about the HTTP headers rather than the document itself.
_BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


class FeedParseError(ValueError):
    """The bytes are not a feed newsmon can use (no entries and a parse error, or not a feed at all)."""


def parse_feed(body: bytes, feed_url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse raw feed bytes; a feed with errors but with entries still counts (the error becomes a warning)."""
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    # Bytes plus headers, never a URL or str: feedparser must not fetch anything or guess from a decoded string.
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # noqa: BLE001 - its own bugs on hostile bytes (KeyError 'links', UnicodeDecodeError
        # of a non-ASCII encoding name) are this feed's parse error, never the run's end
        raise FeedParseError(f"feedparser failed: {type(exc).__name__}: {exc}") from None
    warning = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    entries = tuple(e for e in (_entry(feed_url, raw) for raw in parsed.entries) if e is not None)
    # A feed with nothing in it yet is a feed, even from a server that names no (or the wrong) charset.
    benign = isinstance(parsed.get("bozo_exception"), _BENIGN)
    if not entries and ((warning and not benign) or not parsed.get("version")):
        raise FeedParseError(warning or "not an RSS, Atom or RDF document")
    return ParsedFeed(entries, parsed.feed.get("title"), parsed.get("version") or "", warning)


def _entry(feed_url: str, raw) -> FeedEntry | None:
    link = _link(raw)
    if not link:
        return None
    return FeedEntry(
        feed_url=feed_url,
        guid=raw.get("id"),
        url=canonical_url(link, base=feed_url),
        title=(raw.get("title") or "").strip() or None,
        published=_when(raw),
        summary=raw.get("summary") or None,
        author=raw.get("author") or None,
    )


def _link(raw) -> str | None:
    if raw.get("link"):
        return raw["link"]
    for link in raw.get("links", ()):
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link["href"]
    guid = raw.get("id") or ""
    return guid if raw.get("guidislink") or guid.startswith(("http://", "https://")) else None


def _when(raw) -> datetime | None:
    # feedparser normalises every date format it knows into a UTC struct_time. Plain dict lookups skip
    # FeedParserDict's deprecated published<->updated key aliasing (and its warning).
    stamp = dict.get(raw, "published_parsed") or dict.get(raw, "updated_parsed")
    if not stamp:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(stamp), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):  # year 0 or beyond 9999: a broken date is no date
        return None
