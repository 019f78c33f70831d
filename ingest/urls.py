"""Canonical article URLs, built on courlan (trafilatura's own URL toolkit); pure."""
from __future__ import annotations

import hashlib
from urllib.parse import urljoin, urlsplit, urlunsplit

from courlan import normalize_url


_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str, base: str | None = None) -> str:
    """Return the form newsmon stores: absolute, lower-case scheme/host, no default port,
    no fragment, tracking parameters (utm_*, fbclid, gclid, ...) removed, query sorted.

    Never raises: a link that is not a URL at all ('http://[x', a host that NFKC turns into '#')
    comes back as written, stripped, and the fetcher refuses it as data."""
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:  # an unparseable base or link: keep the link as the feed wrote it
            pass
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme.lower() in _DEFAULT_PORTS and not parts.netloc:
        return url  # 'http:..' has no host: no page to name; normalising it anyway was not idempotent
    try:
        cleaned = normalize_url(url)  # non-strict: strips trackers only, keeps real query keys
    except (ValueError, AttributeError):
        cleaned = url
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return url
    return urlunsplit((parts.scheme, _without_default_port(parts), parts.path or "/", parts.query, ""))


def _without_default_port(parts) -> str:
    """The netloc without :80 for http or :443 for https (courlan strips them from names, not from [IPv6])."""
    try:
        port = parts.port
    except ValueError:  # no number, or out of range: left as written, for the fetcher to refuse
        return parts.netloc
    return parts.netloc.removesuffix(f":{port}") if port == _DEFAULT_PORTS.get(parts.scheme) else parts.netloc


def host_of(url: str) -> str:
    """Lower-case host name of a URL, without port or credentials ('' when absent or unparseable)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # 'http://[x': a link canonical_url kept as written
        return ""


def same_site(a: str, b: str) -> bool:
    """True when two URLs share a registrable-looking host (ignoring a leading 'www.')."""
    strip = lambda h: h[4:] if h.startswith("www.") else h  # noqa: E731
    return bool(host_of(a)) and strip(host_of(a)) == strip(host_of(b))


def prefer_declared(final_url: str, declared: str | None) -> str:
    """The page's own canonical/og:url wins over the fetched URL when it points to the same site."""
    if declared:
        try:
            absolute = urljoin(final_url, declared.strip())
        except ValueError:  # 'http://[x': not an address, so not the page's
            absolute = ""
        if absolute.startswith(("http://", "https://")) and same_site(absolute, final_url):
            return canonical_url(absolute)
    return canonical_url(final_url)


def url_id(url: str) -> int:
    """Stable signed 64-bit article id derived from the canonical URL (same URL, same id, in any run)."""
    return int.from_bytes(hashlib.sha256(url.encode("utf-8")).digest()[:8], "big", signed=True)
