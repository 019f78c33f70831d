"""A generated news site on the loopback server for the sharded-store tests: feeds grouped by the
shard that reads them, article pages of made-up words, and what a correct store holds."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from tests.loopback import Response

_WORDS = [a + b for a in "ba ce di fo gu la me ni po ru sa te vi zo ka".split() for b in "n r s l m t".split()]
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def words(seed: int, n: int = 150) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(_WORDS) for _ in range(n)]


def page(title: str, text: list[str]) -> bytes:
    paragraphs = "".join(f"<p>{' '.join(text[i:i + 30]).capitalize()}.</p>\n" for i in range(0, len(text), 30))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><article><h1>{title}</h1>\n{paragraphs}</article></body></html>").encode()


@dataclass
class Site:
    """Feeds grouped by the shard that reads them, and what a correct store holds."""

    feeds: dict[int, list[str]] = field(default_factory=dict)
    items: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)  # feed url -> (link, title, hour)
    urls: set[str] = field(default_factory=set)  # canonical URLs that must be stored
    copies: dict[str, tuple[str, str]] = field(default_factory=dict)  # copy url -> (original url, kind)
    alerted: set[str] = field(default_factory=set)  # originals the rule matches


def add_article(server, site: Site, feed: str, path: str, title: str, text: list[str], hour: int,
                link: str | None = None, delay_s: float = 0.0) -> str:
    url = server.url(path)
    server.route(path, Response(200, page(title, text), HTML, delay_s=delay_s))
    site.items.setdefault(feed, []).append((link or url, title, hour))
    site.urls.add(url)
    return url


def publish_feeds(server, site: Site) -> None:
    for feeds in site.feeds.values():
        for feed in feeds:
            items = "".join(f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
                            f"<pubDate>Mon, 25 Nov 2019 {hour:02d}:00:00 +0000</pubDate></item>"
                            for link, t, hour in site.items.get(feed, []))
            body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{feed}</title>{items}</channel></rss>'
            server.route(server_path(feed), Response(200, body.encode(), RSS))


def server_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]
