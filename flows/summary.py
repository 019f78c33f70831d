"""The run summary: counted during the cycle, printed at the end, stored in runs.summary."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.models import NOT_MODIFIED, OK


@dataclass
class AlertReport:
    """What the alert stage did in one run."""

    fired: int = 0  # new (alert, article) matches
    suppressed: int = 0  # matches held back by cooldown or max_per_run (recorded, not sent)
    delivered: int = 0
    pending: int = 0  # waiting for a later run (channel down) or for the digest
    failed: int = 0  # gave up after max_attempts
    per_alert: dict[str, int] = field(default_factory=dict)


@dataclass
class RunSummary:
    """Counts for one ingest cycle."""

    feeds_total: int = 0
    feeds_ok: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_backing_off: int = 0
    entries_new: int = 0
    articles_new: int = 0
    articles_duplicate: int = 0
    articles_failed: int = 0  # page not fetched or not extracted: stored from the feed summary
    pages_retry: int = 0  # page failed transiently: tried again by the next run
    alerts: AlertReport = field(default_factory=AlertReport)
    failed_feeds: list[tuple[str, str]] = field(default_factory=list)
    slowest_feeds: list[tuple[str, float]] = field(default_factory=list)
    skipped: str | None = None  # why the cycle did not run (another run was writing the database)
    upgraded: str | None = None  # set when this run moved an older DuckDB file into the store
    shard: str | None = None  # "K/N" when the run read one shard of the feeds
    commit_retries: int = 0  # lake transactions run again after a conflict with another writer

    def add_feeds(self, results) -> None:
        """Count feed outcomes (results are cycle.FeedResult)."""
        self.feeds_total += len(results)
        for r in results:
            if r.error is None and r.response.outcome == OK:
                self.feeds_ok += 1
            elif r.error is None and r.response.outcome == NOT_MODIFIED:
                self.feeds_not_modified += 1
            else:
                self.feeds_failed += 1
                self.failed_feeds.append((r.response.source.url, r.error or r.response.outcome))
        ranked = sorted(results, key=lambda r: r.elapsed_s, reverse=True)[:5]
        self.slowest_feeds = [(r.response.source.url, round(r.elapsed_s, 3)) for r in ranked]

    def add_batch(self, batch, stored) -> None:
        """Count one stored page batch (cycle.PageBatch, storage.articles.StoreResult)."""
        self.entries_new += len(batch.articles)
        self.articles_new += len(stored.inserted)
        self.articles_duplicate += len(stored.duplicates)
        retry = len(stored.waiting)
        self.articles_failed += batch.failed - retry
        self.pages_retry += retry

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON and Prefect artifacts)."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON text for runs.summary."""
        return json.dumps(self.to_dict())

    def lines(self) -> list[str]:
        """The one-screen summary printed after a run."""
        if self.skipped:
            return [f"skipped: {self.skipped}"]
        a = self.alerts
        out = [
            f"feeds:    {self.feeds_total} read: {self.feeds_ok} ok, {self.feeds_not_modified} not modified, "
            f"{self.feeds_failed} failed" + (f"; {self.feeds_backing_off} backing off after failures"
                                            if self.feeds_backing_off else ""),
            f"articles: {self.articles_new} new ({self.articles_duplicate} of them duplicates), "
            f"{self.articles_failed} kept from the feed summary (page failed)"
            + (f", {self.pages_retry} page(s) to try again next run" if self.pages_retry else ""),
            f"alerts:   {a.fired} fired, {a.delivered} delivered, {a.pending} pending, {a.failed} failed"
            + (f", {a.suppressed} held back (cooldown / max_per_run)" if a.suppressed else ""),
        ]
        out += [f"  {name}: {count} hit(s)" for name, count in sorted(a.per_alert.items())]
        if self.upgraded:
            out.insert(0, f"upgrade:  {self.upgraded}")
        if self.shard:
            out.insert(0, f"shard:    {self.shard} of the feeds")
        if self.commit_retries:
            out.append(f"lake:     {self.commit_retries} commit(s) run again after a conflict with another writer")
        out += [f"  failed feed {url}: {error}" for url, error in self.failed_feeds[:10]]
        return out

    def markdown(self) -> str:
        """The summary as a Markdown table (the Prefect run artifact)."""
        a = self.alerts
        rows = [("feeds ok", self.feeds_ok), ("feeds not modified", self.feeds_not_modified),
                ("feeds failed", self.feeds_failed), ("feeds backing off", self.feeds_backing_off),
                ("articles new", self.articles_new), ("articles duplicate", self.articles_duplicate),
                ("articles failed (feed summary kept)", self.articles_failed), ("alerts fired", a.fired),
                ("alerts delivered", a.delivered), ("alerts pending", a.pending), ("alerts failed", a.failed)]
        out = ["| what | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
        if self.slowest_feeds:
            out += ["", "| slowest feeds | seconds |", "|---|---:|"]
            out += [f"| {url} | {secs:.2f} |" for url, secs in self.slowest_feeds]
        if self.failed_feeds:
            out += ["", "| failed feed | error |", "|---|---|"]
            out += [f"| {url} | {error} |" for url, error in self.failed_feeds]
        return "\n".join(out)
