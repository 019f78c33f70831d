"""Attacks and unlucky inputs from the hostile test of newsmon: each one a defect that is now fixed."""
from __future__ import annotations

from tests.helpers import article_html, query, rss, run_plain, simple_config
from tests.loopback import LoopbackHTTPServer, Response

HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def test_site_discovery_does_not_bypass_the_ssrf_guard(tmp_path, db_path, http_server):
    """A home page may advertise a feed on another origin: that feed is an untrusted link."""
    with LoopbackHTTPServer() as internal:
        internal.route("/x.xml", Response(200, rss([internal.url("/secret.html")]), RSS))
        internal.route("/secret.html", Response(200, article_html("secret"), HTML))
        home = (f'<html><head><link rel="alternate" type="application/rss+xml" href="{internal.url("/x.xml")}">'
                f'<link rel="alternate" type="application/rss+xml" href="/own.xml"></head><body>hi</body></html>')
        http_server.route("/home.html", Response(200, home.encode(), HTML))
        http_server.route("/own.xml", Response(200, rss([]), RSS))
        config = simple_config(tmp_path, db_path, sites=[http_server.url("/home.html")],
                               fetch="allow_private_networks = false\nretries = 0")
        run_plain(config)
        run_plain(config)
        assert internal.requests == [], "nothing on the other port was requested"
    feeds = [r[0] for r in query(db_path, "SELECT url FROM feeds ORDER BY url")]
    assert feeds == [http_server.url("/own.xml")], "the same-origin feed is kept, the other one is not stored"
    assert len(http_server.hits("/own.xml")) == 2


def test_redirected_and_canonical_pages_are_not_downloaded_again(tmp_path, db_path, http_server):
    http_server.route("/r/1", Response(301, b"", {"Location": http_server.url("/a/1.html")}))
    http_server.route("/a/1.html", Response(200, article_html(1), HTML))
    http_server.route("/a/2.html", Response(200, article_html(2, canonical=http_server.url("/story/2")), HTML))
    http_server.route("/feed.xml", Response(200, rss([http_server.url("/r/1"), http_server.url("/a/2.html")]), RSS))
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")])
    for _ in range(3):
        run_plain(config)
    assert len(http_server.hits("/r/1")) == 1
    assert len(http_server.hits("/a/1.html")) == 1
    assert len(http_server.hits("/a/2.html")) == 1
    assert len(http_server.hits("/robots.txt")) == 1, "no page to fetch, no robots.txt either"
    assert sorted(r[0] for r in query(db_path, "SELECT url FROM articles")) == [
        http_server.url("/a/1.html"), http_server.url("/story/2")]
