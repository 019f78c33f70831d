"""Atom feeds of alert hits: `newsmon alerts feed NAME`, and `[alert_feeds] atom_dir` rewritten after each run."""
from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from alerts.atom import AtomEntry, render_feed
from storage.alerts import feed_entries

from flows.config import AlertConfig, Settings

log = logging.getLogger("newsmon.alerts")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def alert_feed(con, alert: AlertConfig, entries: int) -> bytes:
    """The Atom document of a rule's latest hits."""
    rows = [AtomEntry(*row) for row in feed_entries(con, alert.rule.name, entries)]
    return render_feed(alert.rule.name, alert.rule.query, rows, datetime.now(timezone.utc))


def feed_file(atom_dir: Path, name: str) -> Path:
    """Where a rule's feed is written: its name with anything but letters, digits, '.', '_', '-' as '_'."""
    return atom_dir / f"{_UNSAFE.sub('_', name)}.xml"


def write_alert_feeds(con, settings: Settings) -> int:
    """Rewrite every rule's feed file (atomically: a reader never sees half a file); returns the count."""
    atom_dir = settings.alert_feeds.atom_dir
    if atom_dir is None:
        return 0
    atom_dir.mkdir(parents=True, exist_ok=True)
    for alert in settings.alerts:
        path = feed_file(atom_dir, alert.rule.name)
        fresh = path.with_name(path.name + ".new")
        fresh.write_bytes(alert_feed(con, alert, settings.alert_feeds.entries))
        os.replace(fresh, path)
    return len(settings.alerts)
