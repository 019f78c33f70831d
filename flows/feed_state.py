"""A feed's fetch state after a poll: validators on success, a growing back-off on failure."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

from ingest.models import NOT_MODIFIED, OK, FeedResponse

# A failing feed is retried after 15 min, 30 min, 1 h, ... capped at one day, so it never slows the others.
FIRST_BACKOFF = timedelta(minutes=15)
MAX_BACKOFF = timedelta(days=1)


def next_state(stored: Mapping[str, Any], response: FeedResponse, error: str | None, now: datetime) -> dict:
    """The feeds row (as storage.feeds.save_feed_states takes it) after this poll."""
    state = dict(stored, url=response.source.url, last_fetched_at=now, last_status=response.status,
                 last_outcome=response.outcome)
    if response.outcome in (OK, NOT_MODIFIED) and error is None:
        state.update(last_ok_at=now, last_error=None, consecutive_failures=0, next_check_at=None,
                     etag=response.etag or stored.get("etag"),
                     last_modified=response.last_modified or stored.get("last_modified"))
        return state
    count = (stored.get("consecutive_failures") or 0) + 1
    state.update(last_error=error or response.error, consecutive_failures=count,
                 next_check_at=now + min(FIRST_BACKOFF * 2 ** (count - 1), MAX_BACKOFF))
    return state
