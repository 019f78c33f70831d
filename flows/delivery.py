"""The alert stage: match new stories, queue deliveries, send what is due.

Deliveries are an outbox: a hit is first stored as `pending` for each channel (in the same
transaction as its match), then sent, then marked. A crash between sending and marking is the
only window in which a receiver can see a hit twice, and the stable X-Newsmon-Delivery id lets
it drop that repeat.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Mapping, Sequence

from alerts.channels import DIGEST, AppriseChannel, Channel, EmailChannel, WebhookChannel
from alerts.deliver import DeliveryOutcome, http_client, send_apprise, send_email, send_webhook
from alerts.match import match_article
from alerts.query import compile_rules
from alerts.render import delivery_id, email_message
from ingest.models import AlertHit, Article
from ingest.redact import redact
from storage import alerts as alert_store
from storage.articles import clear_alert_queue, pending_alerts
from storage.db import write
from storage.feeds import feed_tags

from flows.config import AlertConfig, Settings
from flows.summary import AlertReport

log = logging.getLogger("newsmon.alerts")


def alert_and_deliver(con, settings: Settings, keys=None) -> AlertReport:
    """Match stories waiting for alerts against every rule, record the hits, deliver to immediate channels.

    `keys` (storage.keys.KeyIndex) coordinates writers of a shared lake: the queue is matched by one
    of them at a time, and each delivery is claimed before it is sent."""
    report = AlertReport()
    with keys.exclusive("alerts") if keys is not None else nullcontext():
        fresh, held = _match_queue(con, settings)
    report.fired, report.suppressed = len(fresh), len(held)
    for hit in fresh:
        report.per_alert[hit.alert] = report.per_alert.get(hit.alert, 0) + 1
    digest = {name for name, c in settings.channels.items() if c.mode == DIGEST}
    # Hits queued for a digest are pending too: without them a digest-only setup reports "0 delivered, 0 pending".
    report.pending += sum(1 for hit in fresh for c in _routes(settings).get(hit.alert, ()) if c in digest)
    deliver_pending(con, settings.channels, [name for name in settings.channels if name not in digest], report, keys,
                    settings.secrets)
    return report


def _match_queue(con, settings: Settings) -> tuple[list[AlertHit], list[AlertHit]]:
    """Match the queued stories and record the hits; returns (new hits to deliver, hits held back)."""
    queue = pending_alerts(con)
    hits = find_hits(con, settings, [a for _, a in queue], [i for i, _ in queue])
    now = datetime.now(timezone.utc)
    routed, held = apply_noise_limits(hits, settings.alerts, alert_store.last_hit_at(con), now)

    def record(con) -> list[AlertHit]:  # hits, their outbox rows and the end of the stories' wait commit together
        fresh = alert_store.record_hits(con, routed, _routes(settings), _delivery_ids(routed, settings), now)
        alert_store.record_hits(con, held, {}, {}, now, held=True)  # shown by `newsmon alerts`, never sent
        clear_alert_queue(con, [i for i, _ in queue])
        return fresh

    return write(con, record), held


def find_hits(con, settings: Settings, articles: Sequence[Article], ids: Sequence[int]) -> list[AlertHit]:
    """All (rule, article) matches among the given articles, one compiled matcher for every rule."""
    if not settings.alerts or not articles:
        return []
    matcher = compile_rules([a.rule for a in settings.alerts])
    tags = feed_tags(con)
    hits: list[AlertHit] = []
    for article_id, article in zip(ids, articles):
        hits.extend(match_article(matcher, article_id, article, frozenset(tags.get(article.feed_url, ()))))
    return hits


def apply_noise_limits(hits: Sequence[AlertHit], alerts: Sequence[AlertConfig], last_hit: Mapping[str, datetime],
                       now: datetime) -> tuple[list[AlertHit], list[AlertHit]]:
    """Split hits into (to deliver, held back) by each rule's cooldown and max_per_run."""
    config = {a.rule.name: a for a in alerts}
    last = dict(last_hit)
    sent: dict[str, int] = {}
    routed, held = [], []
    for hit in sorted(hits, key=lambda h: (h.published_at is None, h.published_at or now)):
        rule = config[hit.alert]
        previous = last.get(hit.alert)
        cooling = bool(rule.cooldown_s) and previous is not None and now - previous < timedelta(seconds=rule.cooldown_s)
        over = bool(rule.max_per_run) and sent.get(hit.alert, 0) >= rule.max_per_run
        if cooling or over:
            held.append(hit)
            continue
        routed.append(hit)
        sent[hit.alert] = sent.get(hit.alert, 0) + 1
        last[hit.alert] = now
    return routed, held


def _routes(settings: Settings) -> dict[str, tuple[str, ...]]:
    return {a.rule.name: a.channels for a in settings.alerts}


def _delivery_ids(hits: Sequence[AlertHit], settings: Settings) -> dict[tuple[str, int, str], str]:
    return {(h.alert, h.article_id, c): delivery_id(h.alert, h.article_id, c)
            for h in hits for c in _routes(settings).get(h.alert, ())}


def deliver_pending(con, channels: Mapping[str, Channel], names: Sequence[str], report: AlertReport,
                    keys=None, secrets: Sequence[str] = ()) -> None:
    """Try every pending delivery on the named channels, including those left over from earlier runs.

    With `keys` of a shared lake, a delivery is sent only by the worker that claimed it. Errors are
    stored and logged with every secret (a ${VAR} value of the config) redacted."""
    queue = alert_store.pending(con, names)
    if keys is not None and keys.shared:
        queue = [(hit, channel, attempts) for hit, channel, attempts in queue
                 if keys.claim_delivery(hit.alert, hit.article_id, channel)]
    if not queue:
        return
    by_channel: dict[str, list[tuple[AlertHit, int]]] = {}
    for hit, channel, attempts in queue:
        by_channel.setdefault(channel, []).append((hit, attempts))
    with http_client() as client:
        for name, items in by_channel.items():
            channel = channels.get(name)
            if channel is None:  # channel removed from the config: its old deliveries wait
                report.pending += len(items)
                for hit, _ in items:
                    _release(keys, hit, name, done=False)
                continue
            if isinstance(channel, EmailChannel):
                _deliver_email(con, channel, items, report, keys, secrets)
            else:
                _deliver_each(con, client, channel, items, report, keys, secrets)


def _deliver_each(con, client, channel: WebhookChannel | AppriseChannel,
                  items: Sequence[tuple[AlertHit, int]], report: AlertReport, keys, secrets: Sequence[str]) -> None:
    down = False
    for hit, attempts in items:
        if down:  # one dead endpoint must not cost a full retry cycle per hit: the rest wait for the next run
            report.pending += 1
            _release(keys, hit, channel.name, done=False)
            continue
        outcome = (send_webhook(client, channel, hit) if isinstance(channel, WebhookChannel)
                   else send_apprise(channel, hit))
        outcome = replace(outcome, error=redact(outcome.error, secrets))
        _mark(con, channel, hit, outcome, attempts, report, keys)
        down = not outcome.ok


def _deliver_email(con, channel: EmailChannel, items: Sequence[tuple[AlertHit, int]], report: AlertReport,
                   keys, secrets: Sequence[str]) -> None:
    hits = [hit for hit, _ in items]
    outcome = send_email(channel, email_message(hits, channel, email_batch_key(hits, channel.name)))
    outcome = replace(outcome, error=redact(outcome.error, secrets))
    # The whole message is marked in one commit: a crash leaves all of its hits pending or none, so
    # a resend after a crash forms the same batch and carries the same Message-ID.
    statuses: list[str] = []

    def record(con) -> None:
        statuses[:] = [_record(con, channel, hit, outcome, attempts) for hit, attempts in items]

    write(con, record)
    for hit, status in zip(hits, statuses):
        _release(keys, hit, channel.name, done=status != alert_store.PENDING)
        _report(channel, hit, outcome, status, report)


def email_batch_key(hits: Sequence[AlertHit], channel: str) -> str:
    """What names a message's batch (and so its Message-ID): the set of its hits' delivery ids.

    Sorted, so a resend after a crash gets the same id whatever order the store lists the pending
    hits in (hits published at the same time, or with no date, have no fixed order)."""
    ids = sorted(delivery_id(h.alert, h.article_id, channel) for h in hits)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def delivery_status(ok: bool, attempts: int, max_attempts: int) -> str:
    """Sent, still pending, or failed for good once max_attempts tries have failed."""
    return alert_store.SENT if ok else (alert_store.FAILED if attempts >= max_attempts else alert_store.PENDING)


def _mark(con, channel: Channel, hit: AlertHit, outcome: DeliveryOutcome, attempts: int,
          report: AlertReport, keys=None) -> None:
    statuses: list[str] = []
    write(con, lambda con: statuses.append(_record(con, channel, hit, outcome, attempts)))
    # The claim ends after the lake records the try: a worker dying in between leaves a claim that
    # the next one takes over and then finds the delivery no longer pending.
    _release(keys, hit, channel.name, done=statuses[-1] != alert_store.PENDING)
    _report(channel, hit, outcome, statuses[-1], report)


def _record(con, channel: Channel, hit: AlertHit, outcome: DeliveryOutcome, attempts: int) -> str:
    """Write one delivery try inside the caller's transaction; return the status it got."""
    status = delivery_status(outcome.ok, attempts + 1, channel.max_attempts)
    alert_store.mark(con, hit, channel.name, status, attempts + 1, outcome.error, datetime.now(timezone.utc))
    return status


def _report(channel: Channel, hit: AlertHit, outcome: DeliveryOutcome, status: str, report: AlertReport) -> None:
    if status == alert_store.SENT:
        report.delivered += 1
    elif status == alert_store.FAILED:
        report.failed += 1
        log.warning("delivery of %s/%s to %s failed for good: %s", hit.alert, hit.article_id, channel.name,
                    outcome.error)
    else:
        report.pending += 1
        log.warning("delivery of %s/%s to %s failed, will retry next run: %s", hit.alert, hit.article_id,
                    channel.name, outcome.error)


def _release(keys, hit: AlertHit, channel: str, done: bool) -> None:
    if keys is not None:
        keys.release_delivery(hit.alert, hit.article_id, channel, done)
