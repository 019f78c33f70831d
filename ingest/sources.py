"""Feed lists from OPML files and from a site's advertised feed links; pure."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from urllib.parse import urljoin, urlsplit


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


# trafilatura takes any <link rel="alternate"> of these types for a feed; WordPress advertises its
# REST API that way on every static page, which would become a feed that fails on every run.
# (JSON Feed announces itself as application/feed+json, which is kept.)
_NOT_FEED_TYPES = {"application/json", "text/plain"}


def feeds_from_home_page(html: bytes, page_url: str) -> list[str]:
    """Feed URLs a home page advertises (<link rel="alternate" type="application/rss+xml" ...>), via trafilatura."""
    # Imported here: only site discovery needs it, and a run's main process otherwise never loads trafilatura.
    from trafilatura.feeds import FeedParameters, determine_feed
    from trafilatura.utils import load_html

    tree = load_html(html.decode("utf-8", errors="replace"))
    if tree is None:
        return []
    scheme = urlsplit(page_url).scheme or "http"
    not_feeds = set()
    for link in tree.xpath("//link[@href] | //a[@href]"):
        href = link.get("href").strip()
        if href.startswith("//"):  # trafilatura would give a protocol-relative link to another host plain http
            link.set("href", f"{scheme}:{href}")
        if (link.tag == "link" and link.get("rel") == "alternate"
                and link.get("type", "").split(";")[0].strip().lower() in _NOT_FEED_TYPES):
            not_feeds.add(urljoin(page_url, link.get("href").strip()))
    found = determine_feed(tree, FeedParameters(page_url, urlsplit(page_url).hostname or "", page_url))
    return [url for url in found if url not in not_feeds]
