"""The 200-article cycle the kill trials interrupt: a news site, a webhook receiver and an SMTP
receiver on 127.0.0.1, and the newsmon.toml that reads the one and delivers to the others.

The servers outlive the trials (one set per session): `reset()` forgets what they saw, and
`listener` is told of every page request, webhook POST and email as it arrives, before the
server answers, so a trial can kill the run at that exact point.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

from tests.loopback import LoopbackHTTPServer, Request, Response, SMTPSink

PAGES = 200
FEEDS = 2
ALERT_EVERY = 30  # pages 0, 30, ..., 180 match the alert: 7 hits, each sent and marked on its own
# (copy, original): exact copies of pages that match no alert. The copy is published earlier, so when it
# arrives after its original (as in an uninterrupted run) it takes over and the original is re-pointed.
COPIES = {196: 100, 197: 101, 198: 102, 199: 103}
ALERT = "syria"
WEBHOOK, EMAIL = "hook", "desk"
HTML = {"Content-Type": "text/html; charset=utf-8"}
_START = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)
PAGE_URL = re.compile(r"http://127\.0\.0\.1:\d+/a/\d+\.html")


class Listener(Protocol):
    """What a trial hears from the servers, in the server's thread, before it answers."""

    def page_requested(self, count: int) -> None: ...
    def webhook_received(self, count: int) -> None: ...
    def mail_received(self, count: int) -> None: ...


@dataclass(frozen=True)
class Webhook:
    """One POST the receiver got."""

    delivery_id: str
    body: bytes


@dataclass(frozen=True)
class Mail:
    """One message the SMTP receiver accepted."""

    message_id: str
    urls: frozenset[str]  # the article links it carries


def page_words(n: int) -> str:
    """The text of page n: its own words (no accidental near copies), the alert's phrase on every ALERT_EVERY-th."""
    source = COPIES.get(n, n)
    place = "Deir ez-Zor" if source % ALERT_EVERY == 0 else "Lyon"
    words = " ".join(f"mot{source}x{i}" for i in range(60))
    return f"{place}, dépêche numéro {source}. {words}. Fin de la dépêche {source}, avec assez de texte."


def page_html(n: int) -> bytes:
    """A small article page that trafilatura extracts quickly (a copy shows its original's title and text)."""
    source = COPIES.get(n, n)
    return (f"<html lang='fr'><head><title>Dépêche {source}</title></head><body><article><h1>Dépêche {source}</h1>"
            f"<p>{page_words(n)}</p></article></body></html>").encode()


def published(n: int) -> datetime:
    """Publication time of page n: a minute apart; a copy an hour before its original."""
    if n in COPIES:
        return _START + timedelta(minutes=COPIES[n]) - timedelta(hours=1)
    return _START + timedelta(minutes=n)


def feed_xml(links: list[tuple[int, str]]) -> bytes:
    """RSS 2.0 with one item per (page number, link)."""
    items = "".join(f"<item><title>Dépêche {n}</title><link>{link}</link>"
                    f"<pubDate>{format_datetime(published(n))}</pubDate></item>" for n, link in links)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Fil</title>{items}</channel></rss>'.encode()


class KillSite:
    """The site, both receivers and what they saw; a context manager."""

    def __init__(self) -> None:
        self.site = LoopbackHTTPServer()
        self.receiver = LoopbackHTTPServer()
        self.smtp = SMTPSink(on_message=self._mail)
        self.listener: Listener | None = None
        self._lock = threading.Lock()
        self.page_requests = 0
        self.webhooks: list[Webhook] = []
        self.mails: list[Mail] = []

    def __enter__(self) -> "KillSite":
        for n in range(PAGES):
            self.site.route(f"/a/{n}.html", self._page)
        per_feed = PAGES // FEEDS
        for f in range(FEEDS):
            links = [(n, self.site.url(f"/a/{n}.html")) for n in range(f * per_feed, (f + 1) * per_feed)]
            self.site.route(f"/feed-{f}.xml", Response(200, feed_xml(links), {"Content-Type": "application/rss+xml"}))
        self.receiver.route("/hook", self._webhook)
        self.site.start()
        self.receiver.start()
        self.smtp.start()
        return self

    def __exit__(self, *exc) -> None:
        self.smtp.stop()
        self.receiver.stop()
        self.site.stop()

    def reset(self) -> None:
        """Forget every request and delivery seen so far."""
        with self._lock:
            self.page_requests = 0
            self.webhooks.clear()
            self.mails.clear()

    def url(self, n: int) -> str:
        """The link of page n."""
        return self.site.url(f"/a/{n}.html")

    def config(self, workdir: Path) -> Path:
        """Write the run's newsmon.toml into workdir; the store is workdir/store/newsmon.duckdb."""
        feeds = "".join(f'[[feeds]]\nurl = "{self.site.url(f"/feed-{f}.xml")}"\n\n' for f in range(FEEDS))
        path = workdir / "newsmon.toml"
        path.write_text(f'''[storage]
database = "{database(workdir)}"

[fetch]
allow_private_networks = true
retries = 0
timeout_s = 10
per_host = 8

{feeds}[[alerts]]
name = "{ALERT}"
query = '"Deir ez-Zor"'
channels = ["{WEBHOOK}", "{EMAIL}"]

[channels.{WEBHOOK}]
type = "webhook"
url = "{self.receiver.url('/hook')}"

[channels.{EMAIL}]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {self.smtp.port}
from = "newsmon@example.org"
to = ["desk@example.org"]

[alert_feeds]
atom_dir = "{atom_dir(workdir)}"
''', encoding="utf-8")
        return path

    def _page(self, request: Request) -> Response:
        with self._lock:
            self.page_requests += 1
            count = self.page_requests
        if self.listener is not None:
            self.listener.page_requested(count)
        return Response(200, page_html(int(request.path.rsplit("/", 1)[1].split(".")[0])), HTML)

    def _webhook(self, request: Request) -> Response:
        with self._lock:
            self.webhooks.append(Webhook(request.headers.get("x-newsmon-delivery", ""), request.body))
            count = len(self.webhooks)
        if self.listener is not None:
            self.listener.webhook_received(count)
        return Response(200, b"ok")

    def _mail(self, message: EmailMessage) -> None:
        text = message.get_body(("plain",)).get_content()
        with self._lock:
            self.mails.append(Mail(str(message["Message-ID"]), frozenset(PAGE_URL.findall(text))))
            count = len(self.mails)
        if self.listener is not None:
            self.listener.mail_received(count)


def database(workdir: Path) -> Path:
    """The configured database path of a trial directory (the store is the `.lake` folder beside it)."""
    return workdir / "store" / "newsmon.duckdb"


def atom_dir(workdir: Path) -> Path:
    """Where the run publishes its alert feeds: their appearance marks the run's last stage."""
    return workdir / "store" / "atom"
