"""Feed parsing on real feeds from the corpus and on the fixture site's feeds."""
from __future__ import annotations


import pytest

from ingest.parse import FeedParseError, parse_feed

from flows.fixture_site import SITE_DIR
from tests.conftest import FIXTURES, REPO

CORPUS = REPO.parent / "shared" / "corpus" / "feeds"


def site_feed(name: str) -> bytes:
    text = (SITE_DIR / name).read_text(encoding="utf-8")
    return text.replace("{{BASE}}", "http://news.test").replace("{{ALT_BASE}}", "http://partner.test").encode()


def test_rss_link_is_canonical_without_tracking_parameters():
    feed = parse_feed(site_feed("rss.xml"), "http://news.test/rss.xml")
    urls = [e.url for e in feed.entries]
    assert "http://news.test/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html" in urls
    assert not any("utm_" in u for u in urls)
    assert all(e.published is not None and e.published.tzinfo is not None for e in feed.entries)


def test_rss_and_atom_agree_on_the_seed_url():
    rss = {e.url for e in parse_feed(site_feed("rss.xml"), "http://news.test/rss.xml").entries}
    atom = {e.url for e in parse_feed(site_feed("atom.xml"), "http://news.test/atom.xml").entries}
    assert rss & atom


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present beside the checkout")
@pytest.mark.parametrize("name", ["real-miniflux-encoding_ISO-8859-1.xml", "real-miniflux-encoding_WINDOWS-1251.xml",
                                  "real-mediacloud-real-korean-times.xml", "real-nodefp-illegally-nested.xml"])
def test_real_feeds_in_odd_encodings_yield_entries(name):
    feed = parse_feed((CORPUS / name).read_bytes(), f"http://feeds.test/{name}")
    assert feed.entries and all(e.url.startswith("http") for e in feed.entries)
    assert not any("\ufffd" in (e.title or "") for e in feed.entries), "no mojibake in titles"


def test_html_instead_of_a_feed_is_a_parse_error():
    with pytest.raises(FeedParseError):
        parse_feed(b"<html><body><p>Not a feed</p></body></html>", "http://news.test/feed")


def test_undefined_entity_still_yields_entries():
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>T &nbsp;</title>
    <item><title>One &eacute;</title><link>http://news.test/a</link></item></channel></rss>"""
    feed = parse_feed(body, "http://news.test/feed")
    assert [e.url for e in feed.entries] == ["http://news.test/a"] and feed.warning
