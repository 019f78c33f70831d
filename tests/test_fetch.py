"""ingest.fetch against a real HTTP server on 127.0.0.1 (plus the pure robots and guard rules)."""
from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
import zlib

import brotli
import pytest

from ingest import fetch, netguard, robots
from ingest.fetch import Fetcher
from ingest.models import (BLOCKED, HTTP_ERROR, NETWORK_ERROR, NOT_HTML, NOT_MODIFIED, OK,
                           PARSE_ERROR, TIMEOUT, TOO_LARGE, FeedEntry, FeedSource, FetchPolicy)
from tests.loopback import LoopbackHTTPServer, Response, free_port, self_signed_cert

HTML = b"<!DOCTYPE html><html><head><title>t</title></head><body><p>Hello</p></body></html>"
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'


def make_policy(**overrides) -> FetchPolicy:
    """Small timeouts and backoff so the suite stays quick; loopback allowed unless a test says not."""
    base = dict(timeout_s=2.0, connect_timeout_s=1.0, retries=2, backoff_s=0.01,
                max_retry_after_s=2.0, allow_private_networks=True, respect_robots=False)
    return FetchPolicy(**{**base, **overrides})


def entry(url: str) -> FeedEntry:
    return FeedEntry(feed_url="http://feeds.test/rss", guid=None, url=url, title=None,
                     published=None, summary=None)


def pages(policy: FetchPolicy, *urls: str, exempt=()):
    """Fetch the pages concurrently with one Fetcher."""
    async def go():
        async with Fetcher(policy, exempt=exempt) as fetcher:
            return await asyncio.gather(*(fetcher.fetch_page(entry(u)) for u in urls))
    return asyncio.run(go())


def page(policy: FetchPolicy, url: str, exempt=()):
    return pages(policy, url, exempt=exempt)[0]


def feed(policy: FetchPolicy, source: FeedSource):
    async def go():
        async with Fetcher(policy) as fetcher:
            return await fetcher.fetch_feed(source)
    return asyncio.run(go())


@pytest.fixture
def server(http_server):
    return http_server


def peak_memory(call) -> tuple[object, int]:
    """Run `call` and return its result with the peak traced allocation size."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return c.compress(data) + c.flush()


def _gzip_bomb(size: int) -> bytes:
    """`size` zero bytes gzipped, built a MiB at a time."""
    c = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = b"\0" * (1 << 20)
    return b"".join(c.compress(zeros) for _ in range(size >> 20)) + c.flush()


# ---------------------------------------------------------------------------- timeouts and size


def test_slow_page_times_out(server):
    server.route("/slow", Response(200, HTML, {"Content-Type": "text/html"}, delay_s=3))
    result = page(make_policy(timeout_s=0.3, retries=0), server.url("/slow"))
    assert result.outcome == TIMEOUT and result.body is None
    assert [a.outcome for a in result.attempts] == [TIMEOUT]


def test_dribbling_server_hits_overall_deadline(server):
    def dribble():
        yield b"<html><body>"
        while True:  # each byte arrives well inside the read timeout
            time.sleep(0.05)
            yield b"x"
    server.route("/drip", Response(200, dribble(), {"Content-Type": "text/html"}))
    result = page(make_policy(timeout_s=0.5, retries=0), server.url("/drip"))
    assert result.outcome == TIMEOUT
    assert result.attempts[0].status == 200 and result.attempts[0].bytes > 0


def test_endless_chunked_body_is_too_large_with_bounded_memory(server):
    server.route("/endless", Response(200, itertools.repeat(b"a" * 65536),
                                      {"Content-Type": "text/html"}))
    result, peak = peak_memory(lambda: page(make_policy(max_bytes=1_000_000), server.url("/endless")))
    assert result.outcome == TOO_LARGE and result.body is None
    assert 0 < result.attempts[0].bytes <= 1_000_000
    assert len(result.attempts) == 1  # too_large is final, not retried
    assert peak < 12_000_000


@pytest.mark.parametrize("encoding, bomb", [
    ("gzip", _gzip_bomb(64 << 20)),
    ("br", brotli.compress(b"\0" * (64 << 20), quality=5)),
])
def test_compression_bomb_is_too_large_with_bounded_memory(server, encoding, bomb):
    server.route("/bomb", Response(200, bomb, {"Content-Type": "text/html",
                                               "Content-Encoding": encoding}))
    result, peak = peak_memory(lambda: page(make_policy(max_bytes=1_000_000), server.url("/bomb")))
    assert result.outcome == TOO_LARGE
    assert peak < 12_000_000  # a whole-chunk inflate would need tens of MB


def test_compressed_page_is_decoded_under_the_cap(server):
    server.route("/gz", Response(200, _gzip(HTML * 100), {"Content-Type": "text/html",
                                                          "Content-Encoding": "gzip"}))
    result = page(make_policy(), server.url("/gz"))
    assert result.outcome == OK and result.body == HTML * 100
    assert server.hits("/gz")[0].headers["accept-encoding"].startswith("gzip")


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding, encode", [
    ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
    ("deflate", _raw_deflate),  # what some servers send instead
    ("br", brotli.compress),
])
def test_other_encodings_are_decoded(server, encoding, encode):
    server.route("/z", Response(200, encode(HTML), {"Content-Type": "text/html",
                                                    "Content-Encoding": encoding}))
    result = page(make_policy(), server.url("/z"))
    assert result.outcome == OK and result.body == HTML


@pytest.mark.parametrize("encoding, body", [("zstd", b"\x28\xb5\x2f\xfd"), ("gzip", b"not gzip at all")])
def test_unknown_or_corrupt_encoding_is_parse_error(server, encoding, body):
    server.route("/z", Response(200, body, {"Content-Type": "text/html", "Content-Encoding": encoding}))
    result = page(make_policy(), server.url("/z"))
    assert result.outcome == PARSE_ERROR and len(result.attempts) == 1


def test_declared_content_length_over_cap_is_refused_unread(server):
    server.route("/big", Response(200, b"<html>" + b"a" * 300_000, {"Content-Type": "text/html"}))
    result = page(make_policy(max_bytes=100_000), server.url("/big"))
    assert result.outcome == TOO_LARGE and result.attempts[0].bytes == 0


# ---------------------------------------------------------------------------- content types


def test_pdf_behind_article_link_is_not_html(server):
    server.route("/paper.pdf", Response(200, b"%PDF-1.7\n" + b"x" * 5000,
                                        {"Content-Type": "application/pdf"}))
    result = page(make_policy(), server.url("/paper.pdf"))
    assert result.outcome == NOT_HTML and result.body is None
    assert result.attempts[0].bytes == 0  # decided from the header, not downloaded
    assert "application/pdf" in result.error


def test_missing_content_type_with_html_body_is_ok(server):
    server.route("/bare", Response(200, b"\n  <!doctype HTML>" + HTML[15:]))
    result = page(make_policy(), server.url("/bare"))
    assert result.outcome == OK and result.content_type is None


def test_text_plain_with_pdf_bytes_is_not_html(server):
    server.route("/mislabelled", Response(200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
                                          {"Content-Type": "text/plain"}))
    result = page(make_policy(), server.url("/mislabelled"))
    assert result.outcome == NOT_HTML and result.body is None


def test_octet_stream_with_html_body_is_ok(server):
    server.route("/x", Response(200, HTML, {"Content-Type": "application/octet-stream"}))
    assert page(make_policy(), server.url("/x")).outcome == OK


@pytest.mark.parametrize("codec", ["latin-1", "windows-1252"])
def test_meta_charset_pages_pass_through_unchanged(server, codec):
    body = (f'<html><head><meta charset="{codec}"><title>Caf\u00e9</title></head>'
            '<body><p>\u201cna\u00efve\u201d \u2013 d\u00e9j\u00e0 vu</p></body></html>')
    raw = body.encode(codec, "replace")
    server.route("/p", Response(200, raw, {"Content-Type": "text/html"}))
    result = page(make_policy(), server.url("/p"))
    assert result.outcome == OK and result.body == raw
    assert result.content_type == "text/html"


def test_header_charset_is_passed_on_unchanged(server):
    raw = "<html><body>d\u00e9j\u00e0</body></html>".encode("latin-1")
    server.route("/p", Response(200, raw, {"Content-Type": "text/html; Charset=ISO-8859-1"}))
    result = page(make_policy(), server.url("/p"))
    assert result.body == raw and result.content_type == "text/html; Charset=ISO-8859-1"


@pytest.mark.parametrize("raw", [b"\xef\xbb\xbf" + HTML, "\ufeff<html><body>x</body></html>".encode("utf-16-le")])
def test_bom_pages_are_sniffed_as_html_and_kept_byte_for_byte(server, raw):
    server.route("/bom", Response(200, raw))
    result = page(make_policy(), server.url("/bom"))
    assert result.outcome == OK and result.body == raw


@pytest.mark.parametrize("body, expected", [
    (b"<!DOCTYPE html><html>", True), (b"  <HTML lang=en>", True), (b"<!-- c --><html>", True),
    (b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml">', True),
    (b"<p>para", True), (b"<pre>code", False), (b"%PDF-1.5", False), (b"plain words", False),
    (b"<rss version='2.0'>", False), (b"", False),
])
def test_sniff_html(body, expected):
    assert fetch.sniff_html(body) is expected


# ---------------------------------------------------------------------------- redirects


def test_redirect_chain_records_every_hop(server):
    server.route("/a", Response(301, b"", {"Location": "/b"}))
    server.route("/b", Response(302, b"", {"Location": server.url("/c")}))
    server.route("/c", Response(200, HTML, {"Content-Type": "text/html"}))
    result = page(make_policy(), server.url("/a"))
    assert result.outcome == OK and result.final_url == server.url("/c")
    assert [(a.url, a.status) for a in result.attempts] == [
        (server.url("/a"), 301), (server.url("/b"), 302), (server.url("/c"), 200)]


def test_redirect_loop_is_http_error(server):
    server.route("/a", Response(302, b"", {"Location": "/b"}))
    server.route("/b", Response(302, b"", {"Location": "/a"}))
    result = page(make_policy(), server.url("/a"))
    assert result.outcome == HTTP_ERROR and "redirect loop" in result.error
    assert len(server.requests) == 2
    assert result.attempts[-1].outcome == HTTP_ERROR


def test_too_many_redirects_is_http_error(server):
    for i in range(5):
        server.route(f"/{i}", Response(307, b"", {"Location": f"/{i + 1}"}))
    result = page(make_policy(max_redirects=2), server.url("/0"))
    assert result.outcome == HTTP_ERROR and "more than 2 redirects" in result.error
    assert len(result.attempts) == 3


def test_redirect_without_location_is_http_error(server):
    server.route("/a", Response(301, b""))
    result = page(make_policy(), server.url("/a"))
    assert result.outcome == HTTP_ERROR and "Location" in result.error and result.status == 301


def test_redirect_to_non_http_scheme_is_blocked(server):
    server.route("/a", Response(302, b"", {"Location": "file:///etc/passwd"}))
    result = page(make_policy(), server.url("/a"))
    assert result.outcome == BLOCKED and "http(s)" in result.error


# ---------------------------------------------------------------------------- SSRF guard


def test_guard_blocks_a_name_resolving_to_loopback_before_connecting(server):
    server.route("/p", Response(200, HTML, {"Content-Type": "text/html"}))
    result = page(make_policy(allow_private_networks=False, respect_robots=True),
                  server.url("/p", host="localhost"))
    assert result.outcome == BLOCKED and "loopback" in result.error
    assert server.requests == [] and server.max_open_connections == 0


def test_guard_blocks_a_redirect_hop_to_loopback():
    with LoopbackHTTPServer() as outside, LoopbackHTTPServer() as inside:
        inside.route("/admin", Response(200, HTML, {"Content-Type": "text/html"}))
        outside.route("/story", Response(302, b"", {"Location": inside.url("/admin")}))
        # `outside` stands in for a public site; only its endpoint is exempt from the guard.
        result = page(make_policy(allow_private_networks=False), outside.url("/story"),
                      exempt={("127.0.0.1", outside.port)})
        assert result.outcome == BLOCKED and "127.0.0.1" in result.error
        assert [a.status for a in result.attempts] == [302, None]
        assert len(outside.requests) == 1
        assert inside.requests == [] and inside.max_open_connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "0.0.0.0", "127.1"])
def test_guard_blocks_loopback_spellings(server, host):
    # Only loopback forms here, so even a broken guard cannot send a test off the machine;
    # the other ranges are covered by test_guard_address_rules.
    server.route("/p", Response(200, HTML, {"Content-Type": "text/html"}))
    result = page(make_policy(allow_private_networks=False), f"http://{host}:{server.port}/p")
    assert result.outcome == BLOCKED and "address" in result.error
    assert server.requests == []


def test_guarded_https_connects_to_the_vetted_address_with_the_name_for_tls(tmp_path, monkeypatch):
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with LoopbackHTTPServer(tls=(cert, key)) as tls_server:
        tls_server.route("/p", Response(200, HTML, {"Content-Type": "text/html"}))
        result = page(make_policy(allow_private_networks=False), tls_server.url("/p", host="localhost"),
                      exempt={("127.0.0.1", tls_server.port), ("::1", tls_server.port)})
        assert result.outcome == OK and result.body == HTML
        assert tls_server.hits("/p")[0].host == "localhost"  # Host header keeps the name


def test_feeds_are_not_guarded(server):
    server.route("/rss", Response(200, RSS, {"Content-Type": "application/rss+xml"}))
    result = feed(make_policy(allow_private_networks=False), FeedSource(server.url("/rss", "localhost")))
    assert result.outcome == OK and result.body == RSS


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.1.1", "private"),
    ("172.16.0.1", "private"), ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("100.64.0.1", "not globally routable"), ("::1", "loopback"),
    ("::", "unspecified"), ("fe80::1", "link-local"), ("fd00::1", "private"), ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("8.8.8.8", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_guard_address_rules(address, reason):
    found = netguard.refusal(address)
    assert (found is None) if reason is None else found.startswith(reason)


def test_guard_refuses_a_name_with_any_private_address():
    with pytest.raises(netguard.BlockedAddress, match="10.0.0.7"):
        netguard.vet("mixed.example", 443, ["93.184.216.34", "10.0.0.7"])
    assert netguard.vet("ok.example", 443, ["93.184.216.34"]) == ["93.184.216.34"]


# ---------------------------------------------------------------------------- retries


def test_flaky_page_succeeds_on_third_attempt(server):
    server.route("/flaky", [Response(500, b"oops"), Response(500, b"oops"),
                            Response(200, HTML, {"Content-Type": "text/html"})])
    result = page(make_policy(retries=2), server.url("/flaky"))
    assert result.outcome == OK
    assert [(a.status, a.outcome) for a in result.attempts] == [
        (500, HTTP_ERROR), (500, HTTP_ERROR), (200, OK)]


def test_retries_exhausted_keeps_last_error(server):
    server.route("/down", Response(503, b"down"))
    result = page(make_policy(retries=1), server.url("/down"))
    assert result.outcome == HTTP_ERROR and result.status == 503
    assert len(result.attempts) == 2 == len(server.hits("/down"))


def test_429_retry_after_is_honoured(server):
    server.route("/busy", [Response(429, b"", {"Retry-After": "1"}),
                           Response(200, HTML, {"Content-Type": "text/html"})])
    started = time.monotonic()
    result = page(make_policy(backoff_s=0.01), server.url("/busy"))
    assert result.outcome == OK and [a.status for a in result.attempts] == [429, 200]
    # Only the server's Retry-After can explain a pause this long with a 10 ms backoff.
    assert time.monotonic() - started >= 0.95


def test_retry_after_beyond_cap_gives_up_at_once(server):
    server.route("/busy", Response(429, b"", {"Retry-After": "3600"}))
    result = page(make_policy(max_retry_after_s=5), server.url("/busy"))
    assert result.outcome == HTTP_ERROR and len(result.attempts) == 1


def test_404_feed_is_final(server):
    result = feed(make_policy(retries=3), FeedSource(server.url("/missing.xml")))
    assert result.outcome == HTTP_ERROR and result.status == 404 and result.body is None
    assert len(result.attempts) == 1 == len(server.requests)


def test_connection_refused_is_network_error_and_retried():
    result = page(make_policy(retries=1), f"http://127.0.0.1:{free_port()}/x")
    assert result.outcome == NETWORK_ERROR
    assert [a.outcome for a in result.attempts] == [NETWORK_ERROR, NETWORK_ERROR]


# ---------------------------------------------------------------------------- feeds


def test_feed_conditional_get_304(server):
    server.route("/rss", Response(304, b""))
    source = FeedSource(server.url("/rss"), etag='"v1"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    result = feed(make_policy(), source)
    assert result.outcome == NOT_MODIFIED and result.body is None
    assert result.etag == '"v1"' and result.last_modified == source.last_modified
    sent = server.hits("/rss")[0].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_feed_200_returns_validators_and_user_agent(server):
    server.route("/rss", Response(200, RSS, {"Content-Type": "application/rss+xml",
                                             "ETag": '"v2"', "Last-Modified": "Tue, 02 Jan 2024 00:00:00 GMT"}))
    result = feed(make_policy(user_agent="newsmon-test/9"), FeedSource(server.url("/rss"), etag='"v1"'))
    assert result.outcome == OK and result.body == RSS
    assert (result.etag, result.last_modified) == ('"v2"', "Tue, 02 Jan 2024 00:00:00 GMT")
    assert server.hits("/rss")[0].headers["user-agent"] == "newsmon-test/9"


@pytest.mark.parametrize("content_type, body, outcome", [
    ("text/html", RSS, OK),  # mislabelled feed: the bytes decide
    ("application/feed+json", b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', OK),
    ("text/html", HTML, OK),  # the parser decides; feed discovery needs the home page
    ("application/octet-stream", b"\x89PNG\r\n\x1a\n\0\0", PARSE_ERROR),
    ("application/rss+xml", b"%PDF-1.4\n", PARSE_ERROR),
])
def test_feed_body_verdicts(server, content_type, body, outcome):
    server.route("/f", Response(200, body, {"Content-Type": content_type}))
    result = feed(make_policy(), FeedSource(server.url("/f")))
    assert result.outcome == outcome and result.content_type == content_type
    assert (result.body == body) if outcome == OK else result.body is None


# ---------------------------------------------------------------------------- robots.txt


def test_robots_disallow_blocks_and_is_fetched_once(server):
    server.route("/robots.txt", Response(200, b"User-agent: *\nDisallow: /private/\n",
                                         {"Content-Type": "text/plain"}))
    server.route("/private/a", Response(200, HTML, {"Content-Type": "text/html"}))
    server.route("/news/b", Response(200, HTML, {"Content-Type": "text/html"}))
    blocked, allowed = pages(make_policy(respect_robots=True),
                             server.url("/private/a"), server.url("/news/b"))
    assert blocked.outcome == BLOCKED and "robots.txt" in blocked.error
    assert allowed.outcome == OK
    assert len(server.hits("/robots.txt")) == 1 and server.hits("/private/a") == []
    kinds = [a.kind for p in (blocked, allowed) for a in p.attempts]
    assert kinds.count("robots") == 1


@pytest.mark.parametrize("answer", [Response(404, b""), Response(500, b""), Response(200, b"", delay_s=2)])
def test_unavailable_robots_allows_and_is_logged(server, answer):
    server.route("/robots.txt", answer)
    server.route("/p", Response(200, HTML, {"Content-Type": "text/html"}))
    result = page(make_policy(respect_robots=True, retries=0, timeout_s=0.5), server.url("/p"))
    assert result.outcome == OK
    assert [a.kind for a in result.attempts] == ["robots", "article"]
    assert result.attempts[0].outcome != OK


ROBOTS_TXT = """
User-agent: *
Disallow: /

User-agent: newsmon
User-agent: otherbot
Disallow: /private   # comment
Allow: /private/press$
Disallow: /*.pdf$
Disallow: /search?q=
Disallow:
"""


@pytest.mark.parametrize("path, allowed", [
    ("/news/1", True), ("/private/x", False), ("/private/press", True), ("/private/press/2", False),
    ("/files/a.pdf", False), ("/files/a.pdf?x=1", True), ("/search?q=x", False), ("/search", True),
    ("/robots.txt", True),
])
def test_robots_rules_for_our_agent(path, allowed):
    rules = robots.parse(ROBOTS_TXT, "Newsmon/0.1 (+https://example.org)")
    assert rules.allows("https://example.org" + path) is allowed


def test_robots_falls_back_to_star_group_and_longest_match():
    text = "User-agent: *\nDisallow: /\nAllow: /news/\n"
    rules = robots.parse(text, "somebot/1")
    assert rules.allows("/news/today") and not rules.allows("/about")


# ---------------------------------------------------------------------------- politeness


def test_per_host_limit_holds_on_the_server_side(server):
    server.route("/robots.txt", Response(404, b""))
    for i in range(60):
        server.route(f"/p{i}", Response(200, HTML, {"Content-Type": "text/html"}, delay_s=0.01))
    results = pages(make_policy(per_host=2, concurrency=16, respect_robots=True),
                    *(server.url(f"/p{i}") for i in range(60)))
    assert all(r.outcome == OK for r in results)
    assert len(server.hits("/robots.txt")) == 1
    assert 1 <= server.max_open_connections <= 2


def test_concurrency_without_host_limit_uses_more_connections(server):
    """The counter above can fail: with a wider per-host limit the server sees more connections."""
    for i in range(30):
        server.route(f"/p{i}", Response(200, HTML, {"Content-Type": "text/html"}, delay_s=0.05))
    pages(make_policy(per_host=8, concurrency=16), *(server.url(f"/p{i}") for i in range(30)))
    assert server.max_open_connections > 2


def test_per_host_delay_spaces_request_starts(server):
    server.route("/p", Response(200, HTML, {"Content-Type": "text/html"}))
    started = time.monotonic()
    results = pages(make_policy(per_host=4, per_host_delay_s=0.1), *[server.url("/p")] * 5)
    assert all(r.outcome == OK for r in results)
    assert time.monotonic() - started >= 0.4  # five starts, at least 0.1 s apart


@pytest.mark.parametrize("url", ["ftp://example.org/x", "mailto:someone@example.org", "not a url"])
def test_unfetchable_links_are_blocked_without_a_request(url):
    result = page(make_policy(), url)
    assert result.outcome == BLOCKED and result.attempts[0].status is None
