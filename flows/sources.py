"""Turn the [[feeds]] config (url / opml / site) into the list of feeds to poll."""
from __future__ import annotations

import logging
from typing import Sequence

from ingest.fetch import Fetcher
from ingest.models import OK, FeedSource
from ingest.sources import SourceError, feeds_from_home_page, feeds_from_opml

from flows.config import FeedConfig

log = logging.getLogger("newsmon.ingest")


async def resolve_sources(configs: Sequence[FeedConfig], fetcher: Fetcher) -> list[FeedSource]:
    """Expand OPML files and site discovery; a source that cannot be read is logged and skipped."""
    found: dict[str, FeedSource] = {}
    for config in configs:
        for source in await _expand(config, fetcher):
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
    return [FeedSource(url, config.name, config.tags) for url in urls]
