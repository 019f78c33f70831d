"""FetchedPage -> Article with trafilatura; pure. The feed-summary fallback is in ingest/feed_article.py."""
from __future__ import annotations

from datetime import datetime

import trafilatura
from lxml import etree

from ingest.dedup import DedupParams, hash_of_normalised, normalise_text, signatures_of_normalised
from ingest.feed_article import aware, clean, guess_language, tidy_text
# Re-exported: callers that extract pages also build the fallback article from the feed.
from ingest.feed_article import article_from_entry, summary_text  # noqa: F401
from ingest.models import OK, Article, FetchedPage
from ingest.page_meta import page_meta
from ingest.urls import prefer_declared

# Below this, what trafilatura kept is chrome (a cookie banner, a menu), not a story.
MIN_TEXT_CHARS = 100

# include_comments=False scored best on the benchmark corpus and keeps reader comments out of
# the body (alerts must not fire on a commenter's words); links and images add no text. Metadata
# comes from ingest/page_meta.py, which reads only the fields newsmon keeps.
_EXTRACT_OPTIONS = {
    "with_metadata": False,
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
    "output_format": "python",
}


def extract_article(page: FetchedPage) -> Article | None:
    """The article a fetched page holds; None when the page yields no usable body."""
    extracted = _extract(page)
    return extracted[0] if extracted else None


def extract_signed(page: FetchedPage, params: DedupParams) -> tuple[Article, tuple[int, ...] | None] | None:
    """The article and its MinHash signature, both from one normalisation of the text.

    What an extraction worker hands back: the main process then has no text to normalise or hash."""
    extracted = _extract(page)
    if extracted is None:
        return None
    article, norm = extracted
    return article, signatures_of_normalised([norm], params)[0]


def _extract(page: FetchedPage) -> tuple[Article, str] | None:
    """The article and its normalised text (the content hash and the signature both start from it)."""
    if page.outcome != OK or not page.body:
        return None
    tree = trafilatura.load_html(page.body)  # bytes: trafilatura detects the charset itself
    if tree is None:
        return None
    entry = page.entry
    declared_url, html_lang = _declared_url(tree), _html_lang(tree)
    meta = page_meta(tree, page.final_url, entry)  # before the body: trafilatura then works on a copy
    doc = trafilatura.bare_extraction(tree, url=page.final_url, **_EXTRACT_OPTIONS)
    text = tidy_text(doc.text) if doc is not None else ""
    if len(text) < MIN_TEXT_CHARS:
        return None
    norm = normalise_text(text)
    published_at, date_source = _published(entry.published, meta.date)
    return Article(
        url=prefer_declared(page.final_url, declared_url),
        feed_url=entry.feed_url,
        title=clean(meta.title) or clean(entry.title),
        author=clean(meta.author) or clean(entry.author),
        published_at=published_at,
        date_source=date_source,
        fetched_at=page.fetched_at,
        # trafilatura names a language only when asked to filter by one: <html lang>, else py3langid.
        language=html_lang or guess_language(text),
        text=text,
        content_hash=hash_of_normalised(norm),
        extraction="trafilatura",
        source_url=entry.url,
        word_count=len(text.split()),
        description=clean(meta.description),
        sitename=clean(meta.sitename),
    ), norm


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
        return aware(feed_date), "feed"
    if page_date:
        try:
            return aware(datetime.fromisoformat(page_date)), "page"
        except ValueError:
            pass
    return None, None
