"""FetchedPage -> Article with trafilatura, or a feed-summary Article as fallback; pure."""
from __future__ import annotations

from datetime import datetime, timezone

import lxml.html
import py3langid
import trafilatura
from lxml import etree

from ingest.dedup import content_hash
from ingest.models import OK, Article, FeedEntry, FetchedPage
from ingest.urls import canonical_url, prefer_declared

# Below this, what trafilatura kept is chrome (a cookie banner, a menu), not a story.
MIN_TEXT_CHARS = 100
# py3langid guesses wildly on a handful of words.
MIN_LANGID_WORDS = 20

# include_comments=False scored best on the benchmark corpus and keeps reader comments out of
# the body (alerts must not fire on a commenter's words); links and images add no text.
_EXTRACT_OPTIONS = {
    "with_metadata": True,
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
    "output_format": "python",
}
# htmldate keeps the time and zone when the page states them; a bare day comes back naive (midnight).
# No extensive search: it guesses from body text ("le budget 2020" -> 2020-01-01) and found a date
# for only 2 more of the 181 corpus pages; the feed's date comes first anyway.
_DATE_PARAMS = {"original_date": True, "extensive_search": False, "outputformat": "%Y-%m-%dT%H:%M:%S%z"}
_BLOCK_TAGS = frozenset(
    "p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote pre tr table section article header footer figure".split()
)


def extract_article(page: FetchedPage) -> Article | None:
    """The article a fetched page holds; None when the page yields no usable body."""
    if page.outcome != OK or not page.body:
        return None
    tree = trafilatura.load_html(page.body)  # bytes: trafilatura detects the charset itself
    if tree is None:
        return None
    declared_url, html_lang = _declared_url(tree), _html_lang(tree)
    doc = trafilatura.bare_extraction(tree, url=page.final_url, date_extraction_params=_DATE_PARAMS,
                                      **_EXTRACT_OPTIONS)
    text = tidy_text(doc.text) if doc is not None else ""
    if len(text) < MIN_TEXT_CHARS:
        return None
    entry = page.entry
    published_at, date_source = _published(entry.published, doc.date)
    return Article(
        url=prefer_declared(page.final_url, declared_url),
        feed_url=entry.feed_url,
        title=_clean(doc.title) or _clean(entry.title),
        author=_clean(doc.author) or _clean(entry.author),
        published_at=published_at,
        date_source=date_source,
        fetched_at=page.fetched_at,
        language=html_lang or _primary_subtag(doc.language) or guess_language(text),
        text=text,
        content_hash=content_hash(text),
        extraction="trafilatura",
        source_url=entry.url,
        word_count=len(text.split()),
        description=_clean(doc.description),
        sitename=_clean(doc.sitename),
    )


def article_from_entry(entry: FeedEntry, fetched_at: datetime, page_url: str | None = None) -> Article:
    """An Article built from the feed's own title and summary, so the story is not lost."""
    text = summary_text(entry.summary) or _clean(entry.title) or ""
    published_at = _aware(entry.published) if entry.published else None
    return Article(
        url=canonical_url(page_url or entry.url),
        feed_url=entry.feed_url,
        title=_clean(entry.title),
        author=_clean(entry.author),
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
    return py3langid.classify(text)[0]


def _declared_url(tree: etree._Element) -> str | None:
    """The page's own idea of its address: <link rel=canonical>, else og:url."""
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return link.get("href")
    og = tree.xpath("//meta[@property='og:url']/@content")
    return og[0] if og and og[0].strip() else None


def _html_lang(tree: etree._Element) -> str | None:
    """Primary language subtag declared on <html lang> (or xml:lang)."""
    root = tree.getroottree().getroot()
    return _primary_subtag(root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang"))


def _primary_subtag(tag: str | None) -> str | None:
    """'fr-FR' / 'FR_fr' -> 'fr'; None for anything that is not a plausible language code."""
    primary = (tag or "").strip().replace("_", "-").split("-")[0].lower()
    return primary if 2 <= len(primary) <= 3 and primary.isascii() and primary.isalpha() else None


def _published(feed_date: datetime | None, page_date: str | None) -> tuple[datetime | None, str | None]:
    """Publication time and where it came from: the feed's (it has time and zone), else the page's."""
    if feed_date is not None:
        return _aware(feed_date), "feed"
    if page_date:
        try:
            return _aware(datetime.fromisoformat(page_date)), "page"
        except ValueError:
            pass
    return None, None


def _aware(moment: datetime) -> datetime:
    """A naive time (a page's bare day) is taken as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _clean(value: str | None) -> str | None:
    """Single-spaced string, or None when empty."""
    cleaned = " ".join((value or "").split())
    return cleaned or None
