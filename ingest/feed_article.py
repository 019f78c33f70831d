"""FeedEntry -> Article from the feed's own title and summary, plus the text helpers extraction shares; pure.

Kept apart from ingest/extract.py so that the run's main process, which only ever builds these
fallback articles, never imports trafilatura: the extraction workers do (see flows/cycle.py).
"""
from __future__ import annotations

from datetime import datetime, timezone

import lxml.html
from lxml import etree

from ingest.dedup import content_hash
from ingest.models import Article, FeedEntry
from ingest.urls import canonical_url

# py3langid guesses wildly on a handful of words.
MIN_LANGID_WORDS = 20
_BLOCK_TAGS = frozenset(
    "p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote pre tr table section article header footer figure".split()
)


def article_from_entry(entry: FeedEntry, fetched_at: datetime, page_url: str | None = None) -> Article:
    """An Article built from the feed's own title and summary, so the story is not lost."""
    text = summary_text(entry.summary) or clean(entry.title) or ""
    published_at = aware(entry.published) if entry.published else None
    return Article(
        url=canonical_url(page_url or entry.url),
        feed_url=entry.feed_url,
        title=clean(entry.title),
        author=clean(entry.author),
        published_at=published_at,
        date_source="feed" if published_at else None,
        fetched_at=fetched_at,
        language=guess_language(text),
        text=text,
        content_hash=content_hash(text),
        extraction="feed_summary",
        source_url=entry.url,
        word_count=len(text.split()),
    )


def summary_text(summary: str | None) -> str:
    """Plain text of a feed summary that may hold HTML: tags dropped, entities decoded, a line per block."""
    if not summary or not summary.strip():
        return ""
    try:
        root = _summary_tree(summary)
    except (etree.ParserError, ValueError):
        return tidy_text(summary)
    for node in root.xpath(".//script | .//style"):
        node.drop_tree()
    for node in root.iter():
        if node.tag in _BLOCK_TAGS:  # keep paragraphs apart once the tags are gone
            node.tail = "\n" + (node.tail or "")
    return tidy_text(root.text_content())


def _summary_tree(summary: str) -> etree._Element:
    """The summary under one element: a fragment in a <div>, or the body of a whole document."""
    try:
        return lxml.html.fragment_fromstring(summary, create_parent="div")
    except AssertionError:  # lxml's "too many bodies": the feed put a whole page ("<html>...") in the summary
        document = lxml.html.document_fromstring(summary)
        body = document.find("body")
        return document if body is None else body


def tidy_text(text: str | None) -> str:
    """Whitespace collapsed inside each line, blank lines dropped: one paragraph per line."""
    lines = (" ".join(line.split()) for line in (text or "").splitlines())
    return "\n".join(line for line in lines if line)


def guess_language(text: str) -> str | None:
    """ISO 639-1 code guessed by py3langid, or None when the text is too short to tell."""
    if len(text.split()) < MIN_LANGID_WORDS:
        return None
    import py3langid  # on first use: loading it pulls in numpy, which a run with nothing new never needs

    return py3langid.classify(text)[0]


def aware(moment: datetime) -> datetime:
    """A naive time (a page's bare day) is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def clean(value: str | None) -> str | None:
    """Single-spaced string, or None when empty."""
    cleaned = " ".join((value or "").split())
    return cleaned or None
