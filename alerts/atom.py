"""An alert rule's hits as an Atom 1.0 feed (RFC 4287); pure.

Ids are stable URNs (`urn:newsmon:alert:<rule>` for the feed, `…:<rule>:<article id>` for an entry),
so a feed reader shows each hit once however often the file is rewritten.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence
from urllib.parse import quote

ATOM = "http://www.w3.org/2005/Atom"
ET.register_namespace("", ATOM)


@dataclass(frozen=True)
class AtomEntry:
    """One alert hit as the feed shows it."""

    article_id: int
    url: str
    title: str | None
    author: str | None
    published_at: datetime | None
    matched_at: datetime
    snippet: str | None
    snippet_html: str | None


def feed_id(rule: str) -> str:
    """The feed's permanent id."""
    return f"urn:newsmon:alert:{quote(rule, safe='')}"


def _when(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def render_feed(rule: str, query: str, entries: Sequence[AtomEntry], now: datetime) -> bytes:
    """The Atom document (UTF-8 bytes) for a rule and its latest hits, newest first."""
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", feed_id(rule))
    _add(feed, "title", f"newsmon alert: {rule}")
    _add(feed, "subtitle", query)
    _add(feed, "updated", _when(max((e.matched_at for e in entries), default=now)))
    _add(_add(feed, "author"), "name", "newsmon")
    _add(feed, "generator", "newsmon")
    for entry in entries:
        item = _add(feed, "entry")
        _add(item, "id", f"{feed_id(rule)}:{entry.article_id}")
        _add(item, "title", entry.title or entry.url)
        _add(item, "link", rel="alternate", href=entry.url)
        _add(item, "updated", _when(entry.matched_at))
        if entry.published_at is not None:
            _add(item, "published", _when(entry.published_at))
        if entry.author:
            _add(_add(item, "author"), "name", entry.author)
        if entry.snippet:
            _add(item, "summary", entry.snippet, type="text")
        if entry.snippet_html:
            _add(item, "content", entry.snippet_html, type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"
