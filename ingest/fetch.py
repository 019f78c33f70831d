"""HTTP for feeds and article pages: limits, retries, size cap, SSRF guard, robots.txt.

Every outcome is data: a bad site gives a FeedResponse / FetchedPage with an outcome from
ingest.models and one FetchAttempt per HTTP exchange, never an exception.
"""
from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Collection

import httpcore
import httpx
from tenacity import (AsyncRetrying, retry_if_result, stop_after_attempt, wait_exponential,
                      wait_random)

from ingest import netguard, robots
from ingest.retry_after import retry_after_seconds
from ingest.models import (BLOCKED, HTTP_ERROR, NETWORK_ERROR, NOT_HTML, NOT_MODIFIED, OK,
                           PARSE_ERROR, TIMEOUT, TOO_LARGE, FeedEntry, FeedResponse, FeedSource,
                           FetchAttempt, FetchedPage, FetchPolicy)

try:
    import brotli
except ImportError:  # pragma: no cover - httpx[brotli] normally provides it
    brotli = None

FEED, ARTICLE, ROBOTS = "feed", "article", "robots"
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 asks crawlers to read at least 500 KiB
_REDIRECTS = {301, 302, 303, 307, 308}
_FEED_ACCEPT = ("application/rss+xml, application/atom+xml, application/rdf+xml, "
                "application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
_PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


class _TooLarge(Exception):
    """The decoded body passed the size cap."""


class _BadEncoding(Exception):
    """The Content-Encoding is unknown or its data is corrupt."""


# ---------------------------------------------------------------------------- fetcher


class Fetcher:
    """Async; one per run. Owns the HTTP clients, the concurrency limits, robots cache."""

    def __init__(self, policy: FetchPolicy, *, exempt: Collection[tuple[str, int]] = ()) -> None:
        """`exempt`: (ip, port) endpoints article links may reach although not public."""
        self.policy = policy
        self._global = asyncio.Semaphore(policy.concurrency)
        self._hosts: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(policy.per_host))
        self._next_start: dict[str, float] = {}
        self._robots: dict[str, robots.Robots] = {}
        self._robots_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Feeds come from the operator, links from third parties: separate pools, so a
        # connection opened without the guard is never reused for an untrusted link.
        self._feed_client = _client(policy, _FEED_ACCEPT, _transport(policy, keepalive=False))
        guard = None if policy.allow_private_networks else frozenset(exempt)
        self._guard = guard
        self._page_client = _client(policy, _PAGE_ACCEPT, _transport(policy, True, guard))
        self._guarded_feed_client = (self._feed_client if guard is None else
                                     _client(policy, _FEED_ACCEPT, _transport(policy, False, guard)))

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._feed_client.aclose()
        await self._page_client.aclose()
        await self._guarded_feed_client.aclose()

    async def link_refusal(self, url: str) -> str | None:
        """Why the SSRF guard would refuse `url` (a link from a third-party page), or None."""
        refused = _unfetchable(url)
        if refused or self._guard is None:
            return refused
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            netguard.vet(parsed.host, port, await _resolve(parsed.host, port, self.policy.connect_timeout_s),
                         self._guard)
        except netguard.BlockedAddress as exc:
            return str(exc)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            return str(exc)
        return None

    async def fetch_feed(self, source: FeedSource) -> FeedResponse:
        """GET a feed conditionally (ETag / Last-Modified); 304 is NOT_MODIFIED."""
        headers = {}
        if source.etag:
            headers["If-None-Match"] = source.etag
        if source.last_modified:
            headers["If-Modified-Since"] = source.last_modified
        attempts: list[FetchAttempt] = []
        client = self._guarded_feed_client if source.guarded else self._feed_client
        ex = await self._follow(client, source.fetch_url or source.url, FEED, headers, attempts)
        validators = ex.headers if ex.outcome in (OK, NOT_MODIFIED) else httpx.Headers()
        keep = ex.outcome == NOT_MODIFIED  # a 304 need not repeat the validators
        return FeedResponse(
            source=source, outcome=ex.outcome, status=ex.status,
            body=ex.body if ex.outcome == OK else None, final_url=ex.url,
            etag=validators.get("etag") or (source.etag if keep else None),
            last_modified=validators.get("last-modified") or (source.last_modified if keep else None),
            content_type=ex.content_type, error=ex.error, attempts=tuple(attempts))

    async def fetch_page(self, entry: FeedEntry) -> FetchedPage:
        """GET an article page through the SSRF guard and robots.txt; only HTML is OK."""
        attempts: list[FetchAttempt] = []
        ex = await self._follow(self._page_client, entry.url, ARTICLE, {}, attempts)
        return FetchedPage(
            entry=entry, outcome=ex.outcome, status=ex.status, final_url=ex.url,
            body=ex.body if ex.outcome == OK else None, content_type=ex.content_type,
            fetched_at=_now(), error=ex.error, attempts=tuple(attempts))

    async def _follow(self, client: httpx.AsyncClient, url: str, kind: str,
                      headers: dict[str, str], attempts: list[FetchAttempt]) -> "_Exchange":
        """GET `url`, following redirects by hand so every hop is counted, logged and guarded."""
        seen: list[str] = []
        for _ in range(self.policy.max_redirects + 1):
            refused = _unfetchable(url) or await self._robots_refusal(client, url, kind, attempts)
            if refused:
                attempts.append(_attempt(_now(), url, kind, None, BLOCKED, refused, 0, 0))
                return _Exchange(url, BLOCKED, error=refused)
            url = str(httpx.URL(url))  # one spelling per URL, so loops are recognised
            seen.append(url)
            ex = await self._with_retries(client, url, kind, headers, attempts)
            if ex.location is None:
                return ex
            if ex.location in seen:
                return _fail_hop(ex, attempts, "redirect loop: " + " -> ".join(seen + [ex.location]))
            url = ex.location
        return _fail_hop(ex, attempts, f"more than {self.policy.max_redirects} redirects")

    async def _with_retries(self, client: httpx.AsyncClient, url: str, kind: str,
                            headers: dict[str, str], attempts: list[FetchAttempt]) -> "_Exchange":
        """One hop, retried on timeouts, network errors, 429 and 5xx with backoff."""
        backoff = (wait_exponential(multiplier=self.policy.backoff_s, max=self.policy.max_retry_after_s)
                   + wait_random(0, self.policy.backoff_s))  # jitter spreads retries of many tasks

        def wait(state) -> float:
            # The server's Retry-After, when given, replaces our own guess.
            after = state.outcome.result().retry_after
            return backoff(state) if after is None else after

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.retries + 1), wait=wait,
            retry=retry_if_result(self._worth_retrying),
            retry_error_callback=lambda state: state.outcome.result())
        return await retrying(self._exchange, client, url, kind, headers, attempts)

    def _worth_retrying(self, ex: "_Exchange") -> bool:
        """Transient failures only; a Retry-After beyond our cap means 'not this run'."""
        transient = ex.outcome in (TIMEOUT, NETWORK_ERROR) or (
            ex.outcome == HTTP_ERROR and ex.status is not None
            and (ex.status == 429 or ex.status >= 500))
        return transient and (ex.retry_after is None or ex.retry_after <= self.policy.max_retry_after_s)

    async def _exchange(self, client: httpx.AsyncClient, url: str, kind: str,
                        headers: dict[str, str], attempts: list[FetchAttempt]) -> "_Exchange":
        """One request and response inside the host and global limits; logs a FetchAttempt."""
        host = httpx.URL(url).host
        # Host slot first: a task waiting for a busy host must not sit on a global slot.
        async with self._hosts[host], self._global:
            await self._pace(host)
            at, started = _now(), time.monotonic()
            ex = _Exchange(url)
            await self._request(client, ex, kind, headers)
        elapsed = int((time.monotonic() - started) * 1000)
        attempts.append(_attempt(at, url, kind, ex.status, ex.outcome, ex.error, elapsed, ex.nbytes))
        return ex

    async def _pace(self, host: str) -> None:
        """Keep request starts on one host at least per_host_delay_s apart."""
        delay = self.policy.per_host_delay_s
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self._next_start.get(host, 0.0))
        self._next_start[host] = start + delay  # claimed before sleeping, so waiters queue up
        await asyncio.sleep(start - loop.time())

    async def _request(self, client: httpx.AsyncClient, ex: "_Exchange", kind: str,
                       headers: dict[str, str]) -> None:
        """Fill `ex` from one GET; every failure becomes an outcome, none escapes."""
        try:
            # The overall deadline stops a server that dribbles bytes under the read timeout.
            async with asyncio.timeout(self.policy.timeout_s):
                async with client.stream("GET", ex.url, headers=headers) as response:
                    await self._read_response(response, ex, kind)
        except (TimeoutError, httpx.TimeoutException) as exc:
            ex.fail(TIMEOUT, f"timed out after {self.policy.timeout_s:g}s ({type(exc).__name__})")
        except netguard.BlockedAddress as exc:
            ex.fail(BLOCKED, str(exc))
        except httpx.TransportError as exc:
            ex.fail(NETWORK_ERROR, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a site must never crash the run; keep the reason
            ex.fail(NETWORK_ERROR, f"{type(exc).__name__}: {exc}")

    async def _read_response(self, response: httpx.Response, ex: "_Exchange", kind: str) -> None:
        """Judge status and headers, then read the body only when it can be used."""
        ex.status, ex.headers = response.status_code, response.headers
        ex.content_type = response.headers.get("content-type")
        if _status_verdict(response, ex, kind):
            return
        if kind == ARTICLE and _declared_not_html(ex.content_type):
            ex.fail(NOT_HTML, f"Content-Type {ex.content_type}")  # no need to download it
            return
        cap = ROBOTS_MAX_BYTES if kind == ROBOTS else self.policy.max_bytes
        try:
            body = await _read_capped(response, cap, ex)
        except _TooLarge:
            ex.fail(TOO_LARGE, f"body larger than {cap} bytes")
            return
        except _BadEncoding as exc:
            ex.fail(PARSE_ERROR, str(exc))
            return
        outcome, error = _body_verdict(kind, ex.content_type, body)
        ex.outcome, ex.error, ex.body = outcome, error, body if outcome == OK else None

    async def _robots_refusal(self, client: httpx.AsyncClient, url: str, kind: str,
                              attempts: list[FetchAttempt]) -> str | None:
        """Why robots.txt forbids fetching `url`, or None; only article pages are checked."""
        if kind != ARTICLE or not self.policy.respect_robots:
            return None
        parts = httpx.URL(url)
        origin = f"{parts.scheme}://{parts.netloc.decode('ascii')}"
        async with self._robots_locks[origin]:  # one robots.txt fetch per origin, not one per page
            if origin not in self._robots:
                self._robots[origin] = await self._load_robots(client, origin, attempts)
        if self._robots[origin].allows(url):
            return None
        return f"disallowed by {origin}/robots.txt for {robots.product_token(self.policy.user_agent)}"

    async def _load_robots(self, client: httpx.AsyncClient, origin: str,
                           attempts: list[FetchAttempt]) -> robots.Robots:
        """Fetch and parse robots.txt; anything but a 2xx body allows all (the attempt is logged)."""
        ex = await self._follow(client, origin + "/robots.txt", ROBOTS, {}, attempts)
        if ex.outcome != OK or ex.status is None or not 200 <= ex.status < 300:
            return robots.ALLOW_ALL
        return robots.parse(ex.body.decode("utf-8", "replace"), self.policy.user_agent)


# ---------------------------------------------------------------------------- one exchange


@dataclass
class _Exchange:
    """What one HTTP exchange gave, filled in as it goes (so a timeout keeps the status)."""

    url: str
    outcome: str = OK
    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    content_type: str | None = None
    body: bytes | None = None
    error: str | None = None
    location: str | None = None  # set on a redirect that should be followed
    retry_after: float | None = None
    nbytes: int = 0

    def fail(self, outcome: str, error: str) -> None:
        """Record a non-OK outcome."""
        self.outcome, self.error, self.body, self.location = outcome, error, None, None


def _status_verdict(response: httpx.Response, ex: _Exchange, kind: str) -> bool:
    """Handle redirects, 304 and error statuses; True when the body is not wanted."""
    status = response.status_code
    if status in _REDIRECTS:
        location = response.headers.get("location")
        try:
            ex.location = str(response.url.join(location)) if location else None
        except httpx.InvalidURL:
            ex.location = None
        if not ex.location:
            ex.fail(HTTP_ERROR, f"HTTP {status} without a usable Location header")
        return True
    if status == 304 and kind == FEED:
        ex.outcome = NOT_MODIFIED
        return True
    if not 200 <= status < 300:
        ex.fail(HTTP_ERROR, f"HTTP {status}")
        if status == 429 or status >= 500:
            ex.retry_after = retry_after_seconds(response.headers.get("retry-after"))
        return True
    return False


def _fail_hop(ex: _Exchange, attempts: list[FetchAttempt], error: str) -> _Exchange:
    """Turn the last redirect hop into the final HTTP_ERROR, in the result and its log row."""
    attempts[-1] = replace(attempts[-1], outcome=HTTP_ERROR, error=error)
    ex.fail(HTTP_ERROR, error)
    return ex


def _unfetchable(url: str) -> str | None:
    """Why `url` cannot be fetched at all (bad syntax, not http/https), or None."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        return f"invalid URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"not an http(s) URL: {url[:200]}"
    return None


def _attempt(at: datetime, url: str, kind: str, status: int | None, outcome: str,
             error: str | None, elapsed_ms: int, nbytes: int) -> FetchAttempt:
    return FetchAttempt(at=at, url=url, kind=kind, status=status, outcome=outcome, error=error,
                        elapsed_ms=elapsed_ms, bytes=nbytes)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------- body and size cap


async def _read_capped(response: httpx.Response, cap: int, ex: _Exchange) -> bytes:
    """The decoded body, or _TooLarge as soon as it passes `cap` decoded bytes."""
    declared = response.headers.get("content-length", "")
    # Compressed data rarely shrinks when decoded, so an encoded size over the cap is enough.
    if declared.isdigit() and int(declared) > cap:
        raise _TooLarge
    decoder = _decoder(response.headers.get("content-encoding"))
    body = bytearray()
    async for raw in response.aiter_raw():
        body += decoder.feed(raw, cap - len(body))
        ex.nbytes = len(body)
    body += decoder.flush(cap - len(body))
    ex.nbytes = len(body)
    return bytes(body)


class _Identity:
    """No Content-Encoding."""

    def feed(self, data: bytes, room: int) -> bytes:
        if len(data) > room:
            raise _TooLarge
        return data

    def flush(self, room: int) -> bytes:
        return b""


class _Zlib:
    """gzip or deflate, decoded at most `room + 1` bytes at a time so a bomb never inflates."""

    def __init__(self, gzip: bool) -> None:
        self._raw_fallback = not gzip
        self._d = zlib.decompressobj(zlib.MAX_WBITS | (16 if gzip else 0))

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._d.decompress(data, room + 1)
        except zlib.error as exc:
            if not self._raw_fallback:
                raise _BadEncoding(f"corrupt compressed body: {exc}") from exc
            # Some servers send raw deflate without the zlib header the RFC asks for.
            self._raw_fallback, self._d = False, zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data, room)
        self._raw_fallback = False
        if len(out) > room:
            raise _TooLarge
        return out

    def flush(self, room: int) -> bytes:
        out = self._d.flush()
        if len(out) > room:
            raise _TooLarge
        return out


class _Brotli:
    """brotli, with the output buffer limited so a few bytes cannot expand to gigabytes."""

    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._d.process(data, output_buffer_limit=room + 1)
        except brotli.error as exc:
            raise _BadEncoding(f"corrupt brotli body: {exc}") from exc
        if len(out) > room:
            raise _TooLarge
        return out

    def flush(self, room: int) -> bytes:
        return b""


def _bounded_brotli() -> bool:
    """Whether the installed brotli can cap its output (brotli >= 1.2); else br is not offered."""
    if brotli is None:
        return False
    try:
        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:
        return False
    return True


_BROTLI = _bounded_brotli()
ACCEPT_ENCODING = "gzip, deflate, br" if _BROTLI else "gzip, deflate"


def _decoder(content_encoding: str | None):
    """A bounded decoder for the Content-Encoding; httpx's own would inflate a whole chunk."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return _Identity()
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib(gzip=coding != "deflate")
    if coding == "br" and _BROTLI:
        return _Brotli()
    raise _BadEncoding(f"unsupported Content-Encoding: {content_encoding}")


# ---------------------------------------------------------------------------- content checks


_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream", "text/plain",
                  "application/unknown", "application/x-unknown", "unknown/unknown"}
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# Tags that start an HTML document per the WHATWG sniffing rules, lower-cased.
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div",
                b"<font", b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br",
                b"<p", b"<!--")
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b",
                 b"RIFF", b"OggS", b"ID3", b"\x00\x00\x00")


def media_type(content_type: str | None) -> str:
    """'text/html' from 'text/html; charset=utf-8'; '' when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _declared_not_html(content_type: str | None) -> bool:
    """A specific, non-HTML Content-Type (a PDF, an image): no need to read the body."""
    kind = media_type(content_type)
    return kind not in _HTML_TYPES and kind not in _GENERIC_TYPES


def _text_prefix(body: bytes, size: int = 1024) -> bytes:
    """The start of the body as lower-case ASCII-ish bytes, BOM removed, UTF-16 narrowed."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            text = body[len(bom):len(bom) + 2 * size].decode(codec, "replace")
            return text.lstrip().lower().encode("ascii", "replace")[:size]
    return body[:size].lstrip().lower()


def sniff_html(body: bytes) -> bool:
    """Whether the body starts like an HTML document (after a BOM and white space)."""
    head = _text_prefix(body)
    if head.startswith(b"<?xml"):  # XHTML: skip the XML declaration
        head = head[head.find(b"?>") + 2:].lstrip() if b"?>" in head else b""
    return any(head.startswith(tag) and head[len(tag):len(tag) + 1] in (b" ", b">", b"\t", b"\n",
                                                                       b"\r", b"/", b"")
               for tag in _HTML_STARTS)


def looks_binary(body: bytes) -> bool:
    """Known binary signatures, or NUL bytes in a body without a UTF-16 BOM."""
    if body.startswith(_BINARY_MAGIC):
        return True
    return not body.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" in body[:512]


def _body_verdict(kind: str, content_type: str | None, body: bytes) -> tuple[str, str | None]:
    """OK or why not, from the body (and, for pages, the declared type)."""
    if kind == ARTICLE:
        if media_type(content_type) in _HTML_TYPES or sniff_html(body):
            return OK, None
        return NOT_HTML, f"body does not look like HTML (Content-Type {content_type or 'missing'})"
    if kind == FEED:
        return _feed_verdict(body)
    return OK, None


def _feed_verdict(body: bytes) -> tuple[str, str | None]:
    """Only a binary body is refused here; whether text is a feed is the parser's call.

    Feed Content-Types are unreliable (RSS served as text/html is common), and an HTML body
    is still wanted by feed discovery, which reads a site's home page through fetch_feed.
    """
    if looks_binary(body):
        return PARSE_ERROR, "binary body, not a feed"
    return OK, None


# ---------------------------------------------------------------------------- clients


def _client(policy: FetchPolicy, accept: str, transport: httpx.AsyncHTTPTransport) -> httpx.AsyncClient:
    """An httpx client with explicit timeouts and headers; redirects are followed by hand."""
    return httpx.AsyncClient(
        transport=transport, follow_redirects=False, trust_env=False,
        timeout=httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s),
        headers={"User-Agent": policy.user_agent, "Accept": accept,
                 "Accept-Encoding": ACCEPT_ENCODING})


def _transport(policy: FetchPolicy, keepalive: bool,
               guard: frozenset[tuple[str, int]] | None = None) -> httpx.AsyncHTTPTransport:
    """A pooled transport; with `guard` set, every new connection goes through the SSRF check."""
    limits = httpx.Limits(max_connections=policy.concurrency,
                          max_keepalive_connections=policy.concurrency if keepalive else 0)
    # SSL_CERT_FILE / SSL_CERT_DIR are honoured so a private CA can be trusted; proxy variables
    # are not (trust_env=False), since a proxy would bypass the guard.
    tls = httpx.create_ssl_context(trust_env=True)
    transport = httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
    if guard is not None:
        # httpx has no public hook for the network backend, so the pool it built is replaced
        # by the same pool connecting through GuardedBackend.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=GuardedBackend(guard))
    return transport


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves names itself and connects only to vetted public addresses.

    Checking the address actually dialled (not a separate lookup beforehand) is what defeats
    DNS rebinding. TLS still uses the URL's host name for SNI and certificate checks, because
    httpcore passes that name to start_tls, not the address.
    """

    def __init__(self, exempt: Collection[tuple[str, int]] = ()) -> None:
        self._exempt = exempt
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None):
        """Resolve, refuse non-public addresses, then connect to a vetted one."""
        addresses = netguard.vet(host, port, await _resolve(host, port, timeout), self._exempt)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address,
                                                     socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the next address, as a resolver-driven connect would
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise netguard.BlockedAddress("unix sockets are not reachable from article links")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses `host` resolves to, in resolver order, without duplicates."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))
