"""A page's title, author, date, description and site name: what newsmon stores of its metadata; pure.

trafilatura's extract_metadata() also finds categories, tags and a licence, which newsmon does not
keep (9% of a page's extraction time on the benchmark corpus), and always runs htmldate and the
author search. This follows the same steps in the same order with trafilatura's own functions, and
skips a step when its answer would not be used: the page's date when the feed entry has one (the
feed's time wins, it carries the time of day and the zone), the page's author when the entry names one.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import unescape

from htmldate import find_date
from lxml import etree
from trafilatura.metadata import (META_URL, examine_meta, extract_author, extract_meta_json, extract_sitename,
                                  extract_title, extract_url)
from trafilatura.utils import line_processing

from ingest.models import FeedEntry

# htmldate keeps the time and zone when the page states them; a bare day comes back naive (midnight).
# No extensive search: it guesses from body text ("le budget 2020" -> 2020-01-01) and found a date
# for only 2 more of the 181 corpus pages; the feed's date comes first anyway.
DATE_PARAMS = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}
_MAX_CHARS = 10_000  # as trafilatura trims its fields


@dataclass(frozen=True)
class PageMeta:
    """Metadata read from the page itself; None where the page has none or it was not asked for."""

    title: str | None = None
    author: str | None = None
    date: str | None = None  # ISO 8601 as htmldate gives it
    description: str | None = None
    sitename: str | None = None


def page_meta(tree: etree._Element, url: str, entry: FeedEntry) -> PageMeta:
    """What the page says of itself, asking only for the fields `entry` does not already give."""
    meta = examine_meta(tree)
    if meta.author and " " not in meta.author:  # a bare handle, not a name (trafilatura's rule)
        meta.author = None
    try:
        meta = extract_meta_json(tree, meta)
    except Exception:  # noqa: BLE001 - trafilatura guards its JSON-LD reader the same way
        pass
    title = meta.title or extract_title(tree)
    author = meta.author or (None if entry.author else extract_author(tree))
    page_url = meta.url or extract_url(tree, url)
    date = None if entry.published else find_date(tree, url=page_url, **DATE_PARAMS)
    sitename = meta.sitename or extract_sitename(tree)
    if sitename:
        sitename = sitename.lstrip("@")
        if sitename and "." not in sitename and not sitename[0].isupper():
            sitename = sitename.title()
    elif page_url:
        match = META_URL.match(page_url)
        sitename = match[1] if match else None
    return PageMeta(_trim(title), _trim(author), _trim(date), _trim(meta.description), _trim(sitename))


def _trim(value: str | None) -> str | None:
    """trafilatura's own clean-up of a metadata field: length cap, entities decoded, spaces trimmed."""
    if not isinstance(value, str):
        return value
    if len(value) > _MAX_CHARS:
        value = value[:_MAX_CHARS - 1] + "…"
    return line_processing(unescape(value))
