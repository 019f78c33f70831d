"""ingest.sources: feed lists from OPML files and from a site's home page; pure, no network."""
from __future__ import annotations

import pytest

from flows.fixture_site import SITE_DIR
from ingest.models import FeedSource
from ingest.sources import SourceError, feeds_from_home_page, feeds_from_opml

OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>Abonnements</title></head>
  <body>
    <outline text="Monde" title="Monde">
      <outline text="Europe">
        <outline type="rss" text="Fil Europe" xmlUrl="https://europe.example/rss.xml"
                 htmlUrl="https://europe.example/"/>
        <outline type="rss" text="Brèves" title="Brèves européennes" xmlUrl="  https://europe.example/breves.xml "/>
      </outline>
      <outline type="rss" text="Fil Monde" xmlUrl="https://monde.example/feed" category="/Dépêches,International"/>
    </outline>
    <outline text="Économie">
      <outline type="rss" text="Marchés" xmlUrl="https://marches.example/atom.xml" category="Bourse, Économie"/>
    </outline>
    <outline>
      <outline type="rss" text="Sans dossier" xmlUrl="https://orphan.example/rss"/>
    </outline>
    <outline type="rss" text="À la racine" xmlUrl="https://root.example/rss"/>
    <outline type="link" text="Juste un lien" url="https://link.example/"/>
  </body>
</opml>""".encode("utf-8")


def test_opml_outlines_become_feeds_tagged_by_their_folders():
    feeds = feeds_from_opml(OPML, tags=("opml",))
    assert feeds == [
        FeedSource("https://europe.example/rss.xml", "Fil Europe", ("opml", "Monde", "Europe")),
        FeedSource("https://europe.example/breves.xml", "Brèves européennes", ("opml", "Monde", "Europe")),
        FeedSource("https://monde.example/feed", "Fil Monde", ("opml", "Monde", "Dépêches", "International")),
        FeedSource("https://marches.example/atom.xml", "Marchés", ("opml", "Économie", "Bourse")),
        FeedSource("https://orphan.example/rss", "Sans dossier", ("opml",)),
        FeedSource("https://root.example/rss", "À la racine", ("opml",)),
    ]


def test_opml_without_config_tags():
    feeds = {f.url: f.tags for f in feeds_from_opml(OPML)}
    assert feeds["https://root.example/rss"] == ()
    assert feeds["https://marches.example/atom.xml"] == ("Économie", "Bourse"), "a tag appears once"


def test_opml_with_no_feeds_is_an_empty_list():
    assert feeds_from_opml(b'<opml version="1.0"><head/><body><outline text="Vide"/></body></opml>') == []


@pytest.mark.parametrize("data, words", [
    (b"", "not valid OPML"),
    (b"<opml><body><outline text='a'></body></opml>", "not valid OPML"),
    (b"this is not xml", "not valid OPML"),
    (b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "no <opml><body>"),
    (b'<opml version="2.0"><head><title>x</title></head></opml>', "no <opml><body>"),
])
def test_invalid_opml_raises_source_error(data, words):
    with pytest.raises(SourceError, match=words):
        feeds_from_opml(data)


def test_home_page_advertises_rss_and_atom():
    html = (SITE_DIR / "index.html").read_text(encoding="utf-8").replace("{{BASE}}", "http://site.example")
    assert feeds_from_home_page(html.encode("utf-8"), "http://site.example/") == [
        "http://site.example/rss.xml", "http://site.example/atom.xml"]


@pytest.mark.parametrize("href, expected", [
    ("/feed.xml", "https://site.example/feed.xml"),
    ("rss.xml", "https://site.example/blog/rss.xml"),
    ("../atom.xml", "https://site.example/atom.xml"),
    ("//cdn.example/news.rss", "https://cdn.example/news.rss"),
    ("https://feeds.example/site", "https://feeds.example/site"),
])
def test_relative_feed_links_are_resolved_against_the_page(href, expected):
    html = f'<html><head><link rel="alternate" type="application/rss+xml" href="{href}"></head><body></body></html>'
    assert feeds_from_home_page(html.encode(), "https://site.example/blog/") == [expected]


def test_relative_links_follow_the_final_page_url():
    html = b'<html><head><link rel="alternate" type="application/atom+xml" href="atom.xml"></head></html>'
    assert feeds_from_home_page(html, "https://site.example/fr/index.html") == ["https://site.example/fr/atom.xml"]


def test_wordpress_rest_api_and_comment_feeds_are_not_feeds():
    html = b"""<html><head>
    <link rel="alternate" type="application/rss+xml" title="News &raquo; Feed" href="https://news.example/feed/" />
    <link rel="alternate" type="application/rss+xml" title="News &raquo; Comments Feed"
          href="https://news.example/comments/feed/" />
    <link rel="https://api.w.org/" href="https://news.example/wp-json/" />
    <link rel="alternate" type="application/json" href="https://news.example/wp-json/wp/v2/pages/42" />
    <link rel="alternate" type="application/json+oembed" href="https://news.example/wp-json/oembed/1.0/embed?url=x" />
    <link rel="alternate" type="application/feed+json" href="/feed.json" />
    <link rel="alternate" hreflang="fr" href="https://news.example/fr/" />
    </head><body></body></html>"""
    assert feeds_from_home_page(html, "https://news.example/") == [
        "https://news.example/feed/", "https://news.example/feed.json"]


def test_home_page_in_another_charset_still_gives_its_feeds():
    html = ('<html><head><meta charset="iso-8859-1"><title>L\'Écho</title>'
            '<link rel="alternate" type="application/rss+xml" title="À la une" href="/une.xml"></head></html>')
    assert feeds_from_home_page(html.encode("latin-1"), "http://site.example/") == ["http://site.example/une.xml"]


def test_home_page_without_feeds_gives_none():
    html = b"<!DOCTYPE html><html><head><title>Accueil</title></head><body><p>Bienvenue</p></body></html>"
    assert feeds_from_home_page(html, "http://site.example/") == []
    assert feeds_from_home_page(b"", "http://site.example/") == []
