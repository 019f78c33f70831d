"""Render an alert email made from the fixture news site and screenshot its HTML part with headless Chromium.

Run: .venv/bin/python bench/render_email_png.py [--out docs/email.png] [--html email.html]

The hits are real: the fixture feeds are parsed, the pages extracted and matched against two rules exactly
as an ingest run would. De-duplication is not run: the exact wire copy is left out by name, and the partner's
updated dispatch stands in for a follow-up story. Nothing touches the network: pages are read from
flows/demo_site and Chromium loads a local file only.
Without a Chromium binary the script says so and exits 0; it is a documentation tool, not a test.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alerts.channels import EmailChannel  # noqa: E402
from alerts.match import match_article  # noqa: E402
from alerts.query import Rule, compile_rules  # noqa: E402
from alerts.render import email_message  # noqa: E402
from flows.fixture_site import SITE_DIR  # noqa: E402
from ingest.extract import extract_article  # noqa: E402
from ingest.models import OK, Article, FetchedPage  # noqa: E402
from ingest.parse import parse_feed  # noqa: E402
from ingest.urls import url_id  # noqa: E402

SITE = "https://www.echo-du-rhone.example"  # the fixture's {{BASE}}
PARTNER = "https://depeches.fil-monde.example"  # the fixture's {{ALT_BASE}}
FEEDS = ("rss.xml", "partenaire.xml")
RULES = (("syria", "déminage AND coalition"), ("lyon-budget", "Lyon AND budget*"))
LEFT_OUT = "depeche-syrie-coalition.html"  # word for word the seed article: de-duplication would drop it
CHANNEL = EmailChannel(name="desk", smtp_host="smtp.example.org", sender="newsmon@example.org",
                       to=("desk@example.org",))
SENT_AT = datetime(2019, 11, 24, 19, 45, tzinfo=timezone.utc)
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def fixture_text(name: str) -> bytes:
    """A fixture file with its placeholders filled in with the example hosts."""
    text = (SITE_DIR / name.lstrip("/")).read_text(encoding="utf-8")
    return text.replace("{{ALT_BASE}}", PARTNER).replace("{{BASE}}", SITE).encode("utf-8")


def fixture_articles() -> list[Article]:
    """Every article the fixture feeds link to, extracted from the saved pages."""
    articles = []
    for feed in FEEDS:
        feed_url = f"{PARTNER if feed == 'partenaire.xml' else SITE}/{feed}"
        for entry in parse_feed(fixture_text(feed), feed_url, "application/rss+xml").entries:
            page = FetchedPage(entry, OK, 200, entry.url.split("?")[0], fixture_text(urlsplit(entry.url).path),
                               "text/html; charset=utf-8", SENT_AT)
            article = extract_article(page)
            if article is not None and not article.url.endswith(LEFT_OUT):
                articles.append(article)
    return articles


def render_html() -> str:
    """The HTML part of the email the two rules would send for the fixture articles."""
    matcher = compile_rules([Rule.from_query(name, query) for name, query in RULES])
    hits = [hit for article in fixture_articles() for hit in match_article(matcher, url_id(article.url), article)]
    message = email_message(hits, CHANNEL, "docs", now=SENT_AT)
    print(f"{message['Subject']} ({len(hits)} hits)")
    return message.get_body(("html",)).get_content()


def screenshot(chromium: str, html: Path, png: Path, width: int, height: int) -> None:
    """Headless Chromium, a throwaway profile, no background traffic: one PNG of the page."""
    with tempfile.TemporaryDirectory(prefix="newsmon-chromium-") as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
                        f"--window-size={width},{height}", html.as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> int:
    """Render, save and screenshot; exit 0 with a message when no Chromium is installed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "email.png")
    parser.add_argument("--html", type=Path, help="also keep the rendered HTML here")
    parser.add_argument("--width", type=int, default=900)
    parser.add_argument("--height", type=int, default=940)
    args = parser.parse_args()
    chromium = next(filter(None, map(shutil.which, CHROMIUMS)), None)
    if chromium is None:
        print("skipped: no Chromium found (on Debian: apt-get install chromium)")
        return 0
    html = render_html()
    with tempfile.TemporaryDirectory(prefix="newsmon-email-") as tmp:
        page = Path(tmp) / "email.html"
        page.write_text(html, encoding="utf-8")
        if args.html:
            shutil.copyfile(page, args.html)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(chromium, page, args.out.resolve(), args.width, args.height)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
