"""Alert hits -> webhook JSON, chat text and email messages (Jinja2 templates); pure."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from alerts.channels import EmailChannel, WebhookChannel
from ingest.models import AlertHit

PAYLOAD_VERSION = 1
EVENT = "alert.hit"
USER_AGENT = "newsmon/0.1"
SUBJECT_MAX_ALERTS = 4  # more alert names than this make the subject unreadable in a mail client

# Fixed forever: changing it would give every past delivery a new id and defeat receivers' de-duplication.
_DELIVERY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://newsmon.invalid/delivery")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    undefined=jinja2.StrictUndefined,  # a typo in a template should fail the tests, not send a blank
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def delivery_id(alert: str, article_id: int, channel: str) -> str:
    """Stable UUID for one hit on one channel: the same in every run and every retry."""
    # JSON keeps the parts apart, so ("a b", 1, "c") and ("a", 1, "b c") can never collide.
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, json.dumps([alert, article_id, channel])))


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (naive datetimes are taken to be UTC already), or None."""
    return None if value is None else _utc(value).isoformat()


def _utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def webhook_payload(hit: AlertHit, channel_name: str) -> dict:
    """The documented, versioned newsmon webhook document for one hit."""
    return {
        "version": PAYLOAD_VERSION,
        "event": EVENT,
        "delivery_id": delivery_id(hit.alert, hit.article_id, channel_name),
        "alert": hit.alert,
        "article": {
            "id": hit.article_id,
            "url": hit.url,
            "title": hit.title,
            "feed_url": hit.feed_url,
            "published_at": iso_utc(hit.published_at),
        },
        "matched_terms": list(hit.matched_terms),
        "snippet": hit.snippet,
    }


def slack_text(hit: AlertHit) -> str:
    """Slack mrkdwn (also accepted by Mattermost) for one hit: alert, link, snippet with *bold* terms."""
    return _ENV.get_template("slack.txt").render(hit=hit, published=_display_time(hit.published_at),
                                                 source=_host(hit.feed_url)).strip()


def webhook_body(hit: AlertHit, channel: WebhookChannel) -> bytes:
    """The exact bytes to POST (and sign) for `channel.format`: 'json' or 'slack'."""
    if channel.format == "json":
        document = webhook_payload(hit, channel.name)
    elif channel.format == "slack":
        document = {"text": slack_text(hit)}
    else:
        raise ValueError(f"unknown webhook format {channel.format!r} (expected 'json' or 'slack')")
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(body: bytes, secret: str) -> str:
    """'sha256=' + hex HMAC-SHA256 of the raw body, keyed with the channel secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_headers(hit: AlertHit, channel: WebhookChannel, body: bytes) -> dict[str, str]:
    """Headers sent with a webhook body; the signature only when the channel has a secret."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Newsmon-Event": EVENT,
        "X-Newsmon-Delivery": delivery_id(hit.alert, hit.article_id, channel.name),
    }
    if channel.secret:
        headers["X-Newsmon-Signature"] = signature(body, channel.secret)
    return headers


def apprise_title(hit: AlertHit) -> str:
    """Notification title for Apprise services."""
    return f"[{hit.alert}] {hit.title or hit.url}"


def apprise_body(hit: AlertHit) -> str:
    """Plain-text notification body for Apprise services: snippet, link, source."""
    return _ENV.get_template("apprise.txt").render(hit=hit, published=_display_time(hit.published_at),
                                                   source=_host(hit.feed_url)).strip()


@dataclass(frozen=True)
class AlertGroup:
    """The hits of one alert, newest first, as the email templates see them."""

    alert: str
    hits: tuple[dict, ...]


def email_subject(hits: Sequence[AlertHit]) -> str:
    """'3 new articles: syria (2), economy (1)': distinct articles, then hits per alert."""
    articles = len({hit.article_id for hit in hits})
    parts = [f"{_one_line(g.alert)} ({len(g.hits)})" for g in group_hits(hits)]
    if len(parts) > SUBJECT_MAX_ALERTS:
        parts = parts[:SUBJECT_MAX_ALERTS] + [f"{len(parts) - SUBJECT_MAX_ALERTS} more"]
    noun = "article" if articles == 1 else "articles"
    return f"{articles} new {noun}: {', '.join(parts)}"


def group_hits(hits: Sequence[AlertHit]) -> list[AlertGroup]:
    """Hits grouped by alert: biggest group first, then by name; newest article first inside."""
    by_alert: dict[str, list[AlertHit]] = {}
    for hit in hits:
        by_alert.setdefault(hit.alert, []).append(hit)
    ordered = sorted(by_alert.items(), key=lambda item: (-len(item[1]), item[0]))
    return [AlertGroup(alert, tuple(_email_view(h) for h in sorted(group, key=_newest_first)))
            for alert, group in ordered]


def message_id(hits: Sequence[AlertHit], batch_key: str) -> str:
    """Deterministic Message-ID: same batch and same hits give the same id, in any order."""
    keys = sorted({json.dumps([hit.alert, hit.article_id]) for hit in hits})
    digest = hashlib.sha256("\n".join([batch_key, *keys]).encode("utf-8")).hexdigest()
    return f"<{digest[:32]}@newsmon>"


def email_message(hits: Sequence[AlertHit], channel: EmailChannel, batch_key: str,
                  *, now: datetime | None = None) -> EmailMessage:
    """One multipart/alternative message (text + HTML) grouping `hits` by alert."""
    if not hits:
        raise ValueError("email_message needs at least one hit")
    subject = email_subject(hits)
    context = {"subject": subject, "groups": group_hits(hits), "channel": channel.name}
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Date"] = format_datetime(now or datetime.now(timezone.utc))
    message["Message-ID"] = message_id(hits, batch_key)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: tells vacation responders not to reply
    # quoted-printable keeps both parts readable in the raw source, whatever the mix of scripts
    message.set_content(_ENV.get_template("email.txt").render(context), cte="quoted-printable")
    message.add_alternative(_ENV.get_template("email.html").render(context), subtype="html",
                            cte="quoted-printable")
    return message


def _email_view(hit: AlertHit) -> dict:
    """What the email templates need from one hit, already made safe for each part."""
    safe_link = hit.url.startswith(("http://", "https://"))  # never render javascript: and the like as a link
    return {
        "title": hit.title or hit.url,
        "url": hit.url,
        "href": hit.url if safe_link else None,
        "source": _host(hit.feed_url),
        "published": _display_time(hit.published_at),
        "terms": hit.matched_terms,
        "snippet": hit.snippet,
        "snippet_html": Markup(hit.snippet_html) if hit.snippet_html else _marked(hit.snippet),
    }


def _marked(snippet: str) -> Markup:
    """Escape a plain snippet and turn its **term** markers into <mark>term</mark>."""
    return Markup(_BOLD.sub(r"<mark>\1</mark>", str(escape(snippet))))


def _newest_first(hit: AlertHit) -> tuple:
    """Sort key: dated hits newest first, undated last, article id as the tie-break."""
    if hit.published_at is None:
        return (1, 0.0, hit.article_id)
    return (0, -_utc(hit.published_at).timestamp(), hit.article_id)


def _display_time(value: datetime | None) -> str | None:
    """'2024-05-01 08:30 UTC' for people, or None."""
    return None if value is None else _utc(value).strftime("%Y-%m-%d %H:%M UTC")


def _host(url: str) -> str:
    """Host of a feed URL for display; the URL itself when it has none."""
    return urlsplit(url).hostname or url


def _one_line(text: str) -> str:
    """Collapse whitespace so a name can never break a mail header."""
    return " ".join(text.split())


def _slack_escape(text: str | None) -> str:
    """Escape the three characters Slack treats as control characters in message text."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    """Percent-encode the characters that would end a Slack <url|label> link early."""
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


def _slack_bold(text: str) -> str:
    """Turn **term** markers into Slack's *term* bold."""
    return _BOLD.sub(r"*\1*", text)


_ENV.filters.update(slack=_slack_escape, slack_url=_slack_url, slack_bold=_slack_bold, one_line=_one_line)
