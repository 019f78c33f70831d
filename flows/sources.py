"""Turn the [[feeds]] config (url / opml / site) into the list of feeds to poll."""
from __future__ import annotations

import logging
from typing import Sequence
from urllib.parse import urlsplit

from dataclasses import replace

from ingest.fetch import Fetcher
from ingest.redact import redact
from ingest.models import OK, FeedSource
from ingest.sources import SourceError, feeds_from_home_page, feeds_from_opml

from flows.config import FeedConfig

log = logging.getLogger("newsmon.ingest")


async def resolve_sources(configs: Sequence[FeedConfig], fetcher: Fetcher,
                          secrets: Sequence[str] = ()) -> list[FeedSource]:
    """Expand OPML files and site discovery; a source that cannot be read is logged and skipped.

    A URL holding a secret is known by its redacted form everywhere newsmon writes it."""
    found: dict[str, FeedSource] = {}
    for config in configs:
        for source in await _expand(config, fetcher):
            shown = redact(source.url, secrets)
            if shown != source.url:
                source = replace(source, url=shown, fetch_url=source.url)
            found.setdefault(source.url, source)
    return list(found.values())


async def _expand(config: FeedConfig, fetcher: Fetcher) -> list[FeedSource]:
    if config.url:
        return [FeedSource(config.url, config.name, config.tags)]
    if config.opml:
        try:
            return feeds_from_opml(config.opml.read_bytes(), config.tags)
        except (OSError, SourceError) as exc:
            log.warning("opml %s: %s", config.opml, exc)
            return []
    response = await fetcher.fetch_feed(FeedSource(config.site, config.name, config.tags))
    if response.outcome != OK or not response.body:
        log.warning("site %s: home page not fetched (%s)", config.site, response.error or response.outcome)
        return []
    urls = feeds_from_home_page(response.body, response.final_url)
    if not urls:
        log.warning("site %s: the home page advertises no feed", config.site)
    found = []
    for url in urls:
        # The home page is a third-party document: only a feed on the configured site's own origin
        # is trusted like a configured URL; any other goes through the SSRF guard.
        guarded = _origin(url) != _origin(config.site)
        refused = await fetcher.link_refusal(url) if guarded else None
        if refused:
            log.warning("site %s: advertised feed %s refused: %s", config.site, url, refused)
            continue
        found.append(FeedSource(url, config.name, config.tags, guarded=guarded))
    return found


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(parts.scheme)
