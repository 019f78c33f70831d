"""Delivery channel settings (built from [channels.NAME] config tables); stdlib only."""
from __future__ import annotations

from dataclasses import dataclass

IMMEDIATE = "immediate"
DIGEST = "digest"


@dataclass(frozen=True)
class WebhookChannel:
    """POST one JSON document per hit to `url`, signed with HMAC-SHA256 when `secret` is set."""

    name: str
    url: str
    secret: str | None = None
    format: str = "json"  # 'json' (versioned newsmon payload) | 'slack' ({"text": ...})
    timeout_s: float = 10.0
    retries: int = 2  # extra attempts within one run
    max_attempts: int = 10  # across runs; then the delivery is marked failed
    mode: str = IMMEDIATE
    schedule: str | None = None


@dataclass(frozen=True)
class EmailChannel:
    """One message per run (or per digest period) to `to`, via SMTP."""

    name: str
    smtp_host: str
    sender: str
    to: tuple[str, ...]
    smtp_port: int = 587
    starttls: bool = False
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 20.0
    retries: int = 2
    max_attempts: int = 10
    mode: str = IMMEDIATE  # 'immediate' | 'digest'
    schedule: str | None = None  # with mode = 'digest': 'hourly' | 'daily' | 'weekly'


@dataclass(frozen=True)
class AppriseChannel:
    """Any service Apprise supports (Slack, Teams, Telegram, Discord, ntfy, ...), one notification per hit."""

    name: str
    urls: tuple[str, ...]
    retries: int = 2
    max_attempts: int = 10
    mode: str = IMMEDIATE
    schedule: str | None = None


Channel = WebhookChannel | EmailChannel | AppriseChannel
