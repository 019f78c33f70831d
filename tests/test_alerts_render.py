"""alerts.render: webhook JSON, signature, Slack text, email message; all pure."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest

from alerts.channels import EmailChannel, WebhookChannel
from alerts.render import (
    PAYLOAD_VERSION,
    apprise_body,
    apprise_title,
    delivery_id,
    email_message,
    signature,
    webhook_body,
    webhook_headers,
)
from ingest.models import AlertHit

WHEN = datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)
EMAIL = EmailChannel(name="desk", smtp_host="127.0.0.1", sender="newsmon@example.org",
                     to=("ana@example.org", "ben@example.org"))


def make_hit(alert: str = "syria", article_id: int = 1, **changes) -> AlertHit:
    """A hit with realistic defaults; keyword arguments override fields."""
    fields = dict(
        alert=alert, article_id=article_id, url=f"https://news.example.com/a/{article_id}",
        title=f"Talks resume in Damascus ({article_id})", feed_url="https://news.example.com/rss",
        published_at=WHEN, matched_terms=("syria", "damascus"),
        snippet="…envoys met in **Damascus** to discuss **Syria**…",
        snippet_html="…envoys met in <mark>Damascus</mark> to discuss <mark>Syria</mark>…",
    )
    fields.update(changes)
    return AlertHit(**fields)


def parts(message) -> dict[str, str]:
    """Content of each text/* part by subtype, after a round trip through bytes."""
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    return {part.get_content_subtype(): part.get_content() for part in parsed.walk()
            if part.get_content_maintype() == "text"}


# --- delivery id ----------------------------------------------------------------------------

def test_delivery_id_is_a_stable_uuid():
    first = delivery_id("syria", 42, "ops-hook")
    assert first == delivery_id("syria", 42, "ops-hook")
    assert uuid.UUID(first).version == 5


@pytest.mark.parametrize("other", [("economy", 42, "ops-hook"), ("syria", 43, "ops-hook"),
                                   ("syria", 42, "desk"), ("syria 42", 4, "ops-hook")])
def test_delivery_id_differs_when_any_part_differs(other):
    assert delivery_id(*other) != delivery_id("syria", 42, "ops-hook")


# --- webhook JSON ---------------------------------------------------------------------------

def test_json_body_is_the_versioned_payload():
    hit = make_hit(article_id=-7_301_234_567_890_123_456, title="Ünïcode & <tags>")
    doc = json.loads(webhook_body(hit, WebhookChannel(name="ops-hook", url="http://x")))
    assert doc["version"] == PAYLOAD_VERSION == 1
    assert doc["event"] == "alert.hit"
    assert doc["delivery_id"] == delivery_id("syria", hit.article_id, "ops-hook")
    assert doc["alert"] == "syria"
    assert doc["article"] == {"id": -7_301_234_567_890_123_456, "url": hit.url, "title": "Ünïcode & <tags>",
                              "feed_url": hit.feed_url, "published_at": "2024-05-01T08:30:00+00:00"}
    assert doc["matched_terms"] == ["syria", "damascus"]
    assert doc["snippet"] == hit.snippet


def test_json_body_is_compact_utf8_not_ascii_escaped():
    body = webhook_body(make_hit(title="Ünïcode"), WebhookChannel(name="h", url="http://x"))
    assert "Ünïcode".encode() in body
    assert b"\\u" not in body and b", " not in body


@pytest.mark.parametrize("published, expected", [
    (None, None),
    (datetime(2024, 5, 1, 8, 30), "2024-05-01T08:30:00+00:00"),  # naive: taken as UTC
    (datetime(2024, 5, 1, 10, 30, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T08:30:00+00:00"),
])
def test_published_at_is_utc_or_null(published, expected):
    doc = json.loads(webhook_body(make_hit(published_at=published), WebhookChannel(name="h", url="http://x")))
    assert doc["article"]["published_at"] == expected


def test_same_hit_gives_the_same_bytes():
    channel = WebhookChannel(name="h", url="http://x")
    assert webhook_body(make_hit(), channel) == webhook_body(make_hit(), channel)


def test_slack_body_links_escapes_and_bolds():
    hit = make_hit(alert="syria", title="Q&A: <what> next", url="https://news.example.com/a|b",
                   snippet="said **Syria** & others")
    doc = json.loads(webhook_body(hit, WebhookChannel(name="chat", url="http://x", format="slack")))
    assert set(doc) == {"text"}
    text = doc["text"]
    assert "<https://news.example.com/a%7Cb|Q&amp;A: &lt;what&gt; next>" in text
    assert "*Syria*" in text and "**" not in text
    assert "&amp; others" in text
    assert text.startswith("*syria*")


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="xml"):
        webhook_body(make_hit(), WebhookChannel(name="h", url="http://x", format="xml"))


# --- signature and headers ------------------------------------------------------------------

def test_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"version":1}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature(body, "s3cret") == f"sha256={expected}"
    assert signature(body, "other") != signature(body, "s3cret")
    assert signature(body + b" ", "s3cret") != signature(body, "s3cret")


def test_headers_carry_event_delivery_and_signature_only_with_a_secret():
    hit, body = make_hit(), b"{}"
    signed = webhook_headers(hit, WebhookChannel(name="h", url="http://x", secret="k"), body)
    unsigned = webhook_headers(hit, WebhookChannel(name="h", url="http://x"), body)
    assert signed["X-Newsmon-Signature"] == signature(body, "k")
    assert "X-Newsmon-Signature" not in unsigned
    assert signed["X-Newsmon-Event"] == "alert.hit"
    assert signed["X-Newsmon-Delivery"] == delivery_id(hit.alert, hit.article_id, "h")
    assert signed["Content-Type"] == "application/json"
    assert signed["User-Agent"].startswith("newsmon")


def test_apprise_title_and_body():
    hit = make_hit()
    assert apprise_title(hit) == f"[syria] {hit.title}"
    body = apprise_body(hit)
    assert hit.snippet in body and hit.url in body and "syria, damascus" in body


# --- email ----------------------------------------------------------------------------------

def three_hits() -> list[AlertHit]:
    return [make_hit("syria", 1), make_hit("economy", 2, matched_terms=("gdp",), snippet="**GDP** grew",
                                           snippet_html="<mark>GDP</mark> grew"),
            make_hit("syria", 3, published_at=WHEN + timedelta(hours=1))]


def test_subject_counts_articles_and_names_alerts_biggest_first():
    message = email_message(three_hits(), EMAIL, "batch-1")
    assert message["Subject"] == "3 new articles: syria (2), economy (1)"


def test_subject_singular_and_distinct_articles():
    assert email_message([make_hit()], EMAIL, "b")["Subject"] == "1 new article: syria (1)"
    same_article = [make_hit("syria", 9), make_hit("assad", 9)]
    assert email_message(same_article, EMAIL, "b")["Subject"] == "1 new article: assad (1), syria (1)"


def test_subject_shortens_a_long_list_of_alerts():
    hits = [make_hit(f"alert{n}", n) for n in range(6)]
    assert email_message(hits, EMAIL, "b")["Subject"] == \
        "6 new articles: alert0 (1), alert1 (1), alert2 (1), alert3 (1), 2 more"


def test_message_is_multipart_alternative_with_snippets_in_both_parts():
    message = email_message(three_hits(), EMAIL, "batch-1")
    assert message.get_content_type() == "multipart/alternative"
    text = parts(message)
    assert set(text) == {"plain", "html"}
    assert "**Damascus**" in text["plain"] and "**GDP** grew" in text["plain"]
    assert "<mark>Damascus</mark>" in text["html"] and "<mark>GDP</mark> grew" in text["html"]
    assert '<a href="https://news.example.com/a/2"' in text["html"]


def test_hits_are_grouped_by_alert_newest_first():
    plain = parts(email_message(three_hits(), EMAIL, "batch-1"))["plain"]
    order = [plain.index(text) for text in ("\nsyria (2)\n", "Damascus (3)", "Damascus (1)", "\neconomy (1)\n")]
    assert order == sorted(order)


def test_html_escapes_titles_but_keeps_the_prepared_snippet_markup():
    hit = make_hit(title="<script>alert(1)</script>", snippet_html="a &lt;b&gt; <mark>Syria</mark>")
    html = parts(email_message([hit], EMAIL, "b"))["html"]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &lt;b&gt; <mark>Syria</mark>" in html


def test_html_falls_back_to_the_plain_snippet_escaped_and_marked():
    hit = make_hit(snippet="x < y and **Syria**", snippet_html="")
    assert "x &lt; y and <mark>Syria</mark>" in parts(email_message([hit], EMAIL, "b"))["html"]


def test_non_web_urls_are_not_links():
    html = parts(email_message([make_hit(url="javascript:alert(1)")], EMAIL, "b"))["html"]
    assert "href=\"javascript" not in html


def test_headers_from_channel_and_deterministic_message_id():
    now = datetime(2024, 5, 2, 6, 0, tzinfo=timezone.utc)
    first = email_message(three_hits(), EMAIL, "batch-1", now=now)
    again = email_message(list(reversed(three_hits())), EMAIL, "batch-1")
    assert first["From"] == "newsmon@example.org"
    assert first["To"] == "ana@example.org, ben@example.org"
    assert first["Date"] == "Thu, 02 May 2024 06:00:00 +0000"
    assert re.fullmatch(r"<[0-9a-f]{32}@newsmon>", first["Message-ID"])
    assert again["Message-ID"] == first["Message-ID"]
    assert email_message(three_hits(), EMAIL, "batch-2")["Message-ID"] != first["Message-ID"]
    assert email_message(three_hits()[:2], EMAIL, "batch-1")["Message-ID"] != first["Message-ID"]


def test_alert_names_cannot_break_the_subject_header():
    message = email_message([make_hit("evil\r\nBcc: x@evil.example")], EMAIL, "b")
    assert "\n" not in message["Subject"]
    assert message_from_bytes(message.as_bytes(), policy=policy.default)["Bcc"] is None


def test_no_hits_is_an_error():
    with pytest.raises(ValueError):
        email_message([], EMAIL, "b")
