"""Digest channels go out once per their period, whatever the digest flow's cron."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alerts.channels import EmailChannel
from flows.config import Settings
from flows.digest import due_channels

NOW = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)


def settings(tmp_path) -> Settings:
    def email(name, mode, schedule):
        return EmailChannel(name=name, smtp_host="127.0.0.1", sender="a@b", to=("c@d",), mode=mode, schedule=schedule)

    channels = {"now": email("now", "immediate", None), "hourly": email("hourly", "digest", "hourly"),
                "daily": email("daily", "digest", "daily"), "weekly": email("weekly", "digest", "weekly")}
    return Settings(path=tmp_path / "newsmon.toml", database=tmp_path / "db.duckdb", channels=channels)


def test_never_sent_digests_are_all_due(tmp_path):
    assert due_channels(settings(tmp_path), {}, NOW) == ["hourly", "daily", "weekly"]


def test_each_digest_waits_for_its_own_period(tmp_path):
    sent_yesterday = {name: NOW - timedelta(days=1) for name in ("hourly", "daily", "weekly")}
    assert due_channels(settings(tmp_path), sent_yesterday, NOW) == ["hourly", "daily"]
    sent_an_hour_ago = {name: NOW - timedelta(minutes=58) for name in ("hourly", "daily", "weekly")}
    assert due_channels(settings(tmp_path), sent_an_hour_ago, NOW) == ["hourly"], "a few minutes of cron drift"
    assert due_channels(settings(tmp_path), {n: NOW for n in ("hourly", "daily", "weekly")}, NOW) == []
