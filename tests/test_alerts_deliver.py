"""alerts.deliver against real servers on 127.0.0.1: HTTP receiver, SMTP sink, Apprise over HTTP."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

import httpx
import pytest

from alerts.channels import AppriseChannel, EmailChannel, WebhookChannel
from alerts.deliver import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    DeliveryOutcome,
    http_client,
    send_apprise,
    send_email,
    send_webhook,
)
from alerts.render import delivery_id, email_message
from ingest.models import AlertHit
from tests.loopback import LoopbackHTTPServer, Request, Response, SMTPSink, free_port, self_signed_cert

SECRET = "whsec-7Qv2-not-for-logs"
PASSWORD = "smtp-pw-9xK3-not-for-logs"
HIT = AlertHit(alert="syria", article_id=42, url="https://news.example.com/a/42",
               title="Talks resume in Damascus", feed_url="https://news.example.com/rss",
               published_at=datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc), matched_terms=("syria",),
               snippet="envoys discussed **Syria** today", snippet_html="envoys discussed <mark>Syria</mark> today")
ECONOMY = AlertHit(alert="economy", article_id=7, url="https://news.example.com/a/7", title="GDP grows",
                   feed_url="https://news.example.com/rss", published_at=None, matched_terms=("gdp",),
                   snippet="**GDP** grew by 2%", snippet_html="<mark>GDP</mark> grew by 2%")


def no_retry(seconds: float) -> None:
    """A sleep for sends that must not wait for a retry."""
    raise AssertionError(f"unexpected retry after {seconds}s")


@pytest.fixture(autouse=True)
def default_trust_store(monkeypatch):
    """Certificate checks use the default CA store unless a test says otherwise (proxies: conftest)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def client():
    with http_client() as c:
        yield c


def webhook(http_server: LoopbackHTTPServer, path: str = "/hook", **changes) -> WebhookChannel:
    return WebhookChannel(**{"name": "ops-hook", "url": http_server.url(path), "secret": SECRET, **changes})


# --- webhook --------------------------------------------------------------------------------

def verifying_receiver(request: Request) -> Response:
    """What a user's receiver does: recompute the HMAC over the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    valid = hmac.compare_digest(expected, request.headers.get("x-newsmon-signature", ""))
    return Response(204 if valid else 401)


def test_signed_webhook_is_verified_by_the_receiver(http_server, client):
    http_server.route("/hook", verifying_receiver)
    outcome = send_webhook(client, webhook(http_server), HIT)
    assert outcome == DeliveryOutcome(ok=True, attempts=1, error=None)
    (request,) = http_server.hits("/hook")
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("newsmon")
    assert request.headers["x-newsmon-event"] == "alert.hit"
    assert request.headers["x-newsmon-delivery"] == delivery_id("syria", 42, "ops-hook")
    doc = json.loads(request.body)
    assert (doc["version"], doc["event"], doc["alert"]) == (1, "alert.hit", "syria")
    assert doc["delivery_id"] == request.headers["x-newsmon-delivery"]
    assert doc["article"]["id"] == 42 and doc["article"]["url"] == HIT.url
    assert doc["matched_terms"] == ["syria"] and doc["snippet"] == HIT.snippet


def test_receiver_rejects_a_wrong_secret(http_server, client):
    http_server.route("/hook", verifying_receiver)
    outcome = send_webhook(client, webhook(http_server, secret="some-other-secret"), HIT)
    assert not outcome.ok and outcome.attempts == 1 and "401" in outcome.error


def test_unsigned_when_the_channel_has_no_secret(http_server, client):
    http_server.route("/hook", Response(200))
    assert send_webhook(client, webhook(http_server, secret=None), HIT).ok
    assert "x-newsmon-signature" not in http_server.hits("/hook")[0].headers


def test_delivery_id_is_the_same_on_every_send(http_server, client):
    http_server.route("/hook", Response(200))
    send_webhook(client, webhook(http_server), HIT)
    send_webhook(client, webhook(http_server), HIT)
    first, second = http_server.hits("/hook")
    assert first.headers["x-newsmon-delivery"] == second.headers["x-newsmon-delivery"]
    assert first.body == second.body


def test_server_errors_are_retried_until_success(http_server, client):
    http_server.route("/hook", [Response(500), Response(500), Response(200)])
    outcome = send_webhook(client, webhook(http_server, retries=2), HIT)  # real sleeps: the default path
    assert outcome == DeliveryOutcome(ok=True, attempts=3, error=None)
    assert len(http_server.hits("/hook")) == 3


def test_persistent_500_gives_up_after_the_retries(http_server, client):
    http_server.route("/hook", Response(500, b"upstream exploded"))
    sleeps: list[float] = []
    outcome = send_webhook(client, webhook(http_server, retries=3), HIT, sleep=sleeps.append)
    assert not outcome.ok
    assert outcome.attempts == 4 == len(http_server.hits("/hook"))
    assert "500" in outcome.error and "upstream exploded" in outcome.error
    assert len(sleeps) == 3
    assert BACKOFF_BASE_S <= sleeps[0] <= 2 * BACKOFF_BASE_S  # first wait: base plus jitter
    assert all(0 < s <= BACKOFF_CAP_S for s in sleeps)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_client_errors_are_final(http_server, client, status):
    http_server.route("/hook", Response(status, b"no such hook"))
    outcome = send_webhook(client, webhook(http_server), HIT, sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert str(status) in outcome.error


def test_429_waits_as_long_as_retry_after_says(http_server, client):
    http_server.route("/hook", [Response(429, headers={"Retry-After": "3"}), Response(200)])
    sleeps: list[float] = []
    outcome = send_webhook(client, webhook(http_server), HIT, sleep=sleeps.append)
    assert outcome.ok and outcome.attempts == 2
    assert sleeps == [3.0]


def test_a_long_retry_after_is_left_to_the_next_run(http_server, client):
    http_server.route("/hook", Response(503, headers={"Retry-After": "3600"}))
    outcome = send_webhook(client, webhook(http_server), HIT, sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "503" in outcome.error and "3600" in outcome.error


def test_connection_refused_is_retried_and_reported_without_the_secret(client):
    channel = WebhookChannel(name="h", url=f"http://127.0.0.1:{free_port()}/hook/{SECRET}", secret=SECRET)
    sleeps: list[float] = []
    outcome = send_webhook(client, channel, HIT, sleep=sleeps.append)
    assert not outcome.ok and outcome.attempts == 3 and len(sleeps) == 2
    assert outcome.error and SECRET not in outcome.error


def test_an_echoed_secret_is_redacted_from_the_error(http_server, client):
    http_server.route("/hook", Response(400, f"bad signature, expected key {SECRET}".encode()))
    outcome = send_webhook(client, webhook(http_server), HIT)
    assert SECRET not in outcome.error and "***" in outcome.error


def test_timeout_is_a_transient_failure(http_server, client):
    http_server.route("/hook", Response(200, delay_s=2.0))
    outcome = send_webhook(client, webhook(http_server, timeout_s=0.2, retries=0), HIT)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "timeout" in outcome.error


def test_redirects_are_reported_not_followed(http_server, client):
    http_server.route("/hook", Response(301, headers={"Location": "/elsewhere"}))
    http_server.route("/elsewhere", Response(200))
    outcome = send_webhook(client, webhook(http_server), HIT)
    assert (outcome.ok, outcome.attempts) == (False, 1) and "301" in outcome.error
    assert http_server.hits("/elsewhere") == []


def test_slack_format_posts_a_text_document(http_server, client):
    http_server.route("/slack", Response(200, b"ok"))
    outcome = send_webhook(client, webhook(http_server, "/slack", format="slack", secret=None), HIT)
    assert outcome.ok
    doc = json.loads(http_server.hits("/slack")[0].body)
    assert list(doc) == ["text"]
    assert f"<{HIT.url}|{HIT.title}>" in doc["text"] and "*Syria*" in doc["text"]


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/hook", "http://[::1"])
def test_bad_urls_come_back_as_failures(client, url):
    outcome = send_webhook(client, WebhookChannel(name="h", url=url, secret=SECRET), HIT, sleep=no_retry)
    assert not outcome.ok and outcome.attempts == 1 and outcome.error


def test_unknown_format_comes_back_as_a_failure(http_server, client):
    outcome = send_webhook(client, webhook(http_server, format="xml"), HIT)
    assert (outcome.ok, outcome.attempts) == (False, 0) and "xml" in outcome.error
    assert http_server.hits("/hook") == []


def test_the_run_client_delivers(http_server):
    http_server.route("/hook", verifying_receiver)
    with http_client() as run_client:
        assert send_webhook(run_client, webhook(http_server), HIT).ok
    assert http_server.hits("/hook")[0].headers["user-agent"].startswith("newsmon")


# --- email ----------------------------------------------------------------------------------

def email_channel(sink: SMTPSink, **changes) -> EmailChannel:
    return EmailChannel(**{"name": "desk", "smtp_host": "127.0.0.1", "smtp_port": sink.port,
                           "sender": "newsmon@example.org", "to": ("ana@example.org", "ben@example.org"),
                           "timeout_s": 5.0, **changes})


def test_email_arrives_with_text_and_html_parts():
    with SMTPSink() as sink:
        channel = email_channel(sink)
        message = email_message([HIT, ECONOMY], channel, "desk:2024-05-01T09")
        outcome = send_email(channel, message)
    assert outcome == DeliveryOutcome(ok=True, attempts=1, error=None)
    (received,) = sink.messages
    assert sink.envelopes == [("newsmon@example.org", ["ana@example.org", "ben@example.org"])]
    assert received["Subject"] == "2 new articles: economy (1), syria (1)"
    assert received["Message-ID"] == message["Message-ID"]
    plain = received.get_body(("plain",)).get_content()
    html = received.get_body(("html",)).get_content()
    assert "**Syria**" in plain and "**GDP** grew by 2%" in plain
    assert "<mark>Syria</mark>" in html and "<mark>GDP</mark>" in html


def test_email_login():
    with SMTPSink(auth=("newsmon", PASSWORD)) as sink:
        channel = email_channel(sink, username="newsmon", password=PASSWORD)
        outcome = send_email(channel, email_message([HIT], channel, "b"))
    assert outcome.ok and len(sink.messages) == 1


def test_wrong_password_is_final_and_not_echoed():
    with SMTPSink(auth=("newsmon", "the-real-one")) as sink:
        channel = email_channel(sink, username="newsmon", password=PASSWORD)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "535" in outcome.error and PASSWORD not in outcome.error
    assert sink.messages == []


def test_smtp_down_is_retried_then_reported():
    channel = EmailChannel(name="desk", smtp_host="127.0.0.1", smtp_port=free_port(), sender="n@example.org",
                           to=("a@example.org",), password=PASSWORD, username="n", retries=2)
    sleeps: list[float] = []
    outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=sleeps.append)
    assert (outcome.ok, outcome.attempts, len(sleeps)) == (False, 3, 2)
    assert "refused" in outcome.error.lower() and PASSWORD not in outcome.error


def test_temporary_smtp_reply_is_retried():
    with SMTPSink(data_replies=["451 4.3.0 Try again later", "250 OK"]) as sink:
        channel = email_channel(sink)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=lambda s: None)
    assert (outcome.ok, outcome.attempts) == (True, 2)
    assert sink.data_attempts == 2 and len(sink.messages) == 1


def test_permanent_smtp_reply_is_final():
    with SMTPSink(data_replies=["554 5.7.1 Message rejected as spam"]) as sink:
        channel = email_channel(sink)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "554" in outcome.error and "rejected as spam" in outcome.error


def test_login_without_server_auth_support_is_final():
    with SMTPSink() as sink:
        channel = email_channel(sink, username="newsmon", password=PASSWORD)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1) and PASSWORD not in outcome.error


@pytest.fixture
def cert(tmp_path):
    return self_signed_cert(tmp_path)


def test_starttls_then_login(cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # trust the test certificate, as a private CA would be
    with SMTPSink(auth=("newsmon", PASSWORD), tls=cert) as sink:
        channel = email_channel(sink, starttls=True, username="newsmon", password=PASSWORD)
        outcome = send_email(channel, email_message([HIT], channel, "b"))
    assert outcome.ok, outcome.error
    assert sink.tls_used == [True]


def test_implicit_tls(cert, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    with SMTPSink(tls=cert, implicit_tls=True) as sink:
        channel = email_channel(sink, ssl=True)
        outcome = send_email(channel, email_message([HIT], channel, "b"))
    assert outcome.ok, outcome.error
    assert sink.tls_used == [True]


def test_untrusted_certificate_is_refused_without_retrying(cert):
    with SMTPSink(auth=("newsmon", PASSWORD), tls=cert) as sink:
        channel = email_channel(sink, starttls=True, username="newsmon", password=PASSWORD)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "certificate" in outcome.error.lower() and PASSWORD not in outcome.error
    assert sink.messages == []


def test_starttls_against_a_server_without_it_is_final():
    with SMTPSink() as sink:
        channel = email_channel(sink, starttls=True)
        outcome = send_email(channel, email_message([HIT], channel, "b"), sleep=no_retry)
    assert (outcome.ok, outcome.attempts) == (False, 1) and "STARTTLS" in outcome.error
    assert sink.messages == []


# --- apprise --------------------------------------------------------------------------------

def test_apprise_json_notification_reaches_the_receiver(http_server):
    http_server.route("/notify", Response(200))
    outcome = send_apprise(AppriseChannel(name="ops", urls=(f"json://127.0.0.1:{http_server.port}/notify",)), HIT)
    assert outcome == DeliveryOutcome(ok=True, attempts=1, error=None)
    doc = json.loads(http_server.hits("/notify")[0].body)
    assert doc["title"] == "[syria] Talks resume in Damascus"
    assert "envoys discussed **Syria** today" in doc["message"] and HIT.url in doc["message"]


def test_apprise_retries_only_the_failing_service(http_server):
    http_server.route("/flaky", [Response(500), Response(200)])
    http_server.route("/steady", Response(200))
    urls = (f"json://127.0.0.1:{http_server.port}/flaky", f"json://127.0.0.1:{http_server.port}/steady")
    outcome = send_apprise(AppriseChannel(name="ops", urls=urls, retries=1), HIT)
    assert outcome.ok and outcome.attempts == 2
    assert (len(http_server.hits("/flaky")), len(http_server.hits("/steady"))) == (2, 1)


def test_apprise_failure_is_reported_without_credentials(http_server):
    http_server.route("/notify", Response(500))
    url = f"json://newsmon:{PASSWORD}@127.0.0.1:{http_server.port}/notify"
    outcome = send_apprise(AppriseChannel(name="ops", urls=(url,), retries=0), HIT)
    assert (outcome.ok, outcome.attempts) == (False, 1)
    assert "500" in outcome.error and PASSWORD not in outcome.error


@pytest.mark.parametrize("urls", [("nosuchservice://x",), ()])
def test_apprise_bad_configuration_is_a_failure(urls):
    outcome = send_apprise(AppriseChannel(name="ops", urls=urls), HIT)
    assert (outcome.ok, outcome.attempts) == (False, 0) and outcome.error
