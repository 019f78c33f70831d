"""Canonical article URLs, built on courlan (trafilatura's own URL toolkit); pure."""
from __future__ import annotations

import hashlib
from urllib.parse import urljoin, urlsplit, urlunsplit

from courlan import normalize_url


def canonical_url(url: str, base: str | None = None) -> str:
    """Return the form newsmon stores: absolute, lower-case scheme/host, no default port,
    no fragment, tracking parameters (utm_*, fbclid, gclid, ...) removed, query sorted."""
    if base:
        url = urljoin(base, url)
    url = url.strip()
    try:
        cleaned = normalize_url(url)  # non-strict: strips trackers only, keeps real query keys
    except (ValueError, AttributeError):
        cleaned = url
    parts = urlsplit(cleaned)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def host_of(url: str) -> str:
    """Lower-case host name of a URL, without port or credentials ('' when absent)."""
    return (urlsplit(url).hostname or "").lower()


def same_site(a: str, b: str) -> bool:
    """True when two URLs share a registrable-looking host (ignoring a leading 'www.')."""
    strip = lambda h: h[4:] if h.startswith("www.") else h  # noqa: E731
    return bool(host_of(a)) and strip(host_of(a)) == strip(host_of(b))


def prefer_declared(final_url: str, declared: str | None) -> str:
    """The page's own canonical/og:url wins over the fetched URL when it points to the same site."""
    if declared:
        absolute = urljoin(final_url, declared.strip())
        if absolute.startswith(("http://", "https://")) and same_site(absolute, final_url):
            return canonical_url(absolute)
    return canonical_url(final_url)


def url_id(url: str) -> int:
    """Stable signed 64-bit article id derived from the canonical URL (same URL, same id, in any run)."""
    return int.from_bytes(hashlib.sha256(url.encode("utf-8")).digest()[:8], "big", signed=True)
