"""Feed lists from OPML files and from a site's advertised feed links; pure."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from urllib.parse import urlsplit

from trafilatura.feeds import FeedParameters, determine_feed

from .models import FeedSource


class SourceError(ValueError):
    """An OPML file or home page newsmon cannot read feeds from."""


def feeds_from_opml(data: bytes, tags: tuple[str, ...] = ()) -> list[FeedSource]:
    """Every outline with an xmlUrl becomes a feed; its title names it and enclosing outlines/categories tag it."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise SourceError(f"not valid OPML: {exc}") from None
    body = root.find("body")
    if root.tag != "opml" or body is None:
        raise SourceError("not an OPML document (no <opml><body>)")
    found: list[FeedSource] = []
    _walk(body, tags, found)
    return found


def _walk(node: ElementTree.Element, tags: tuple[str, ...], found: list[FeedSource]) -> None:
    for outline in node.findall("outline"):
        title = outline.get("title") or outline.get("text")
        url = outline.get("xmlUrl")
        categories = tuple(c.strip().strip("/") for c in (outline.get("category") or "").split(",") if c.strip())
        if url:
            found.append(FeedSource(url=url.strip(), name=title, tags=_unique(tags + categories)))
        else:  # a folder outline: its title tags everything inside it
            _walk(outline, _unique(tags + ((title,) if title else ())), found)


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def feeds_from_home_page(html: bytes, page_url: str) -> list[str]:
    """Feed URLs a home page advertises (<link rel="alternate" type="application/rss+xml" ...>), via trafilatura."""
    host = urlsplit(page_url).hostname or ""
    params = FeedParameters(page_url, host, page_url)
    return determine_feed(html.decode("utf-8", errors="replace"), params)
