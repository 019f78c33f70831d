"""One ingest cycle as plain functions: feeds -> entries -> pages -> articles -> store -> alerts.

flows/ingest.py wraps the stage functions below in Prefect tasks; the benchmark and `Stages()`
run them bare. The orchestration is the same either way.
"""
from __future__ import annotations

import asyncio
from collections import deque
from contextlib import nullcontext
import logging
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Awaitable, Callable, Sequence

from ingest.dedup import DedupParams, signature
from ingest.feed_article import article_from_entry
from ingest.fetch import Fetcher
from ingest.models import (HTTP_ERROR, NETWORK_ERROR, OK, PARSE_ERROR, TIMEOUT, Article, FeedEntry,
                           FeedResponse, FeedSource, FetchAttempt)
from ingest.parse import FeedParseError, parse_feed
from ingest.redact import redact
from ingest.urls import host_of
from storage import feeds as feed_store
from storage import retries as retry_store
from storage import runs as run_store
from storage.db import commit_retries, write
from storage.lock import RunInProgress, writer_lock

from flows.alert_feeds import write_alert_feeds
from flows.compaction import compactor
from flows.config import Settings
from flows.logredact import redacted_logs
from flows.extraction import extract_page, extraction_pool
from flows.delivery import alert_and_deliver
from flows.feed_state import next_state
from flows.maintenance import maintain, maintain_shared
from flows.persist import Store, StoreResult, known, open_store, prepare, prepared_from, store_articles
from flows.sharding import Shard, select
from flows.sources import resolve_sources
from flows.summary import AlertReport, RunSummary
from flows.upgrade import upgrade_legacy

log = logging.getLogger("newsmon.ingest")
PAGE_BATCH = 25  # pages per fetch-and-extract task: coarse enough that per-task overhead stays negligible
BATCHES_IN_FLIGHT = 4  # page batches downloading or waiting for extraction at once
# A page that fails in a way that may pass (timeout, network error, HTTP 429/5xx) is tried again by the
# next runs; the run that makes this many tries in all stores the story from the feed summary instead.
PAGE_RUNS = 3


@dataclass(frozen=True)
class FeedResult:
    """A feed's response plus what parsing it gave."""

    response: FeedResponse
    entries: tuple[FeedEntry, ...] = ()
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class PageBatch:
    """Articles made from a batch of entries, and every HTTP attempt behind them."""

    articles: tuple[Article, ...]
    attempts: tuple[FetchAttempt, ...]
    failed: int  # entries whose page could not be fetched or extracted (kept from the feed summary)
    # (entry, outcome, error) of pages that failed transiently: worth another run (see PAGE_RUNS)
    transient: tuple[tuple[FeedEntry, str, str | None], ...] = ()
    # MinHash signature of each article, computed where its text was made; empty: the store computes them
    signatures: tuple[tuple[int, ...] | None, ...] = ()


async def fetch_feed(fetcher: Fetcher, source: FeedSource) -> FeedResult:
    """Download and parse one feed; a broken feed becomes data, never an exception."""
    started = time.monotonic()
    response = await fetcher.fetch_feed(source)
    if response.outcome != OK or response.body is None:
        return FeedResult(response, error=response.error, elapsed_s=time.monotonic() - started)
    try:
        parsed = parse_feed(response.body, response.final_url or source.url, response.content_type)
    except FeedParseError as exc:
        return FeedResult(_parse_failed(response, str(exc)), error=f"parse error: {exc}",
                          elapsed_s=time.monotonic() - started)
    # Entries keep the configured feed URL as their source, whatever redirects the feed went through.
    entries = tuple(replace(e, feed_url=source.url) for e in parsed.entries)
    return FeedResult(response, entries, elapsed_s=time.monotonic() - started)


def _parse_failed(response: FeedResponse, error: str) -> FeedResponse:
    attempt = FetchAttempt(datetime.now(timezone.utc), response.final_url, "feed", response.status, PARSE_ERROR,
                           error, 0, len(response.body or b""))
    return replace(response, outcome=PARSE_ERROR, error=error, attempts=response.attempts + (attempt,))


async def fetch_and_extract(fetcher: Fetcher, entries: Sequence[FeedEntry], pool: Executor,
                            params: DedupParams = DedupParams()) -> PageBatch:
    """Download pages concurrently; extraction (and each text's signature) runs in the worker `pool`
    while other downloads go on."""
    loop = asyncio.get_running_loop()

    async def one(entry: FeedEntry) -> tuple[Article, tuple[int, ...] | None, tuple[FetchAttempt, ...], bool,
                                             tuple | None]:
        page = await fetcher.fetch_page(entry)
        if page.outcome == OK:
            extracted = await loop.run_in_executor(pool, extract_page, page, params)
            if extracted is not None:
                return extracted[0], extracted[1], page.attempts, False, None
            failure = FetchAttempt(page.fetched_at, page.final_url, "article", page.status, PARSE_ERROR,
                                   "no article body found in the page", 0, len(page.body or b""))
            fallback = article_from_entry(entry, page.fetched_at, page.final_url)
            return fallback, signature(fallback.text, params), page.attempts + (failure,), True, None
        transient = (entry, page.outcome, page.error) if _transient(page.outcome, page.status) else None
        fallback = article_from_entry(entry, page.fetched_at)
        return fallback, signature(fallback.text, params), page.attempts, True, transient

    results = await asyncio.gather(*(one(e) for e in entries))
    return PageBatch(tuple(r[0] for r in results), tuple(a for r in results for a in r[2]),
                     sum(1 for r in results if r[3]), tuple(r[4] for r in results if r[4]),
                     tuple(r[1] for r in results))


def _transient(outcome: str, status: int | None) -> bool:
    """A failure that may pass by the next run: a timeout, a network error, HTTP 429 or 5xx."""
    return outcome in (TIMEOUT, NETWORK_ERROR) or (outcome == HTTP_ERROR and status is not None
                                                   and (status == 429 or status >= 500))


def new_entries(store: Store, results: Sequence[FeedResult], waiting: Sequence[FeedEntry] = ()) -> list[FeedEntry]:
    """Entries whose link is neither stored (as a canonical URL or as a link that led to one) nor seen earlier,
    and the entries waiting for another try after a transient failure."""
    unique: dict[str, FeedEntry] = {}
    for result in results:
        for entry in result.entries:
            unique.setdefault(entry.url, entry)
    for entry in waiting:
        unique.setdefault(entry.url, entry)
    stored = known(store, list(unique))
    return [e for url, e in unique.items() if url not in stored]


def store_batch(store: Store, batch: PageBatch, settings: Settings, run_id: str) -> StoreResult:
    """Store one batch's articles and its fetch_log rows in one lake commit.

    A page that failed transiently waits in page_retries instead, until its PAGE_RUNS-th run."""
    urls = [a.source_url for a in batch.articles if a.source_url]
    tried = retry_store.attempts(store.con, urls)
    wait = [(entry, tried.get(entry.url, 0) + 1, outcome, error) for entry, outcome, error in batch.transient
            if tried.get(entry.url, 0) + 1 < PAGE_RUNS]
    waiting = {entry.url for entry, *_ in wait}
    kept = [i for i, a in enumerate(batch.articles) if a.source_url not in waiting]
    articles = [batch.articles[i] for i in kept]
    prepared = (prepared_from(articles, [batch.signatures[i] for i in kept], settings.dedup) if batch.signatures
                else prepare(articles, settings.dedup))

    def also(con) -> None:
        feed_store.log_attempts(con, batch.attempts, run_id)
        retry_store.forget(con, [u for u in tried if u not in waiting])
        retry_store.save(con, wait, datetime.now(timezone.utc))

    result = store_articles(store, prepared, settings.dedup, run_id, also=also)
    return replace(result, waiting=tuple(sorted(waiting)))


@dataclass
class Stages:
    """The stage callables a cycle runs: plain functions by default, Prefect tasks in the flow."""

    fetch_feed: Callable[..., Awaitable[FeedResult]] = fetch_feed
    fetch_and_extract: Callable[..., Awaitable[PageBatch]] = fetch_and_extract
    store: Callable[..., StoreResult] = store_batch
    alerts: Callable[..., AlertReport] = alert_and_deliver


@dataclass
class _RunState:
    run_id: str
    started: datetime
    summary: RunSummary
    logger: logging.Logger | logging.LoggerAdapter


async def run_cycle(settings: Settings, stages: Stages | None = None, progress=None, logger=None,
                    shard: Shard | None = None) -> RunSummary:
    """Run one full ingest cycle against the store; readers see each batch as it commits.

    A cycle that finds another one writing the same database is skipped, not queued: the running
    one already covers the same feeds, and the next scheduled run picks up whatever is new.
    `progress` (start(total), advance(n)) follows the page downloads; `logger` gets one line per feed.
    `shard` limits the run to one shard of the feeds (flows/sharding.py). With a shared (PostgreSQL)
    catalog there is no writer.lock: runs of different shards write at once, and a run finding the
    same shard in flight on any machine is skipped.
    """
    logger = logger or log
    try:
        with redacted_logs(settings.secrets), \
                (writer_lock(settings.database) if settings.storage.shared is None else nullcontext()):
            return await _locked_cycle(settings, stages or Stages(), progress, logger, shard)
    except RunInProgress as exc:
        logger.warning("skipped: %s", exc)
        return RunSummary(skipped=str(exc), shard=str(shard) if shard else None)


async def _locked_cycle(settings: Settings, stages: Stages, progress, logger, shard: Shard | None) -> RunSummary:
    state = _RunState(uuid.uuid4().hex[:12], datetime.now(timezone.utc), RunSummary(), logger)
    state.summary.shard = str(shard) if shard else None
    retries_before = commit_retries()
    store = open_store(settings.database, settings.dedup, settings.storage.memory_limit,
                       shared=settings.storage.shared, run_id=state.run_id)
    try:
        _claim_scope(store, shard)
    except BaseException:
        store.close()
        raise
    con = store.con
    try:
        if not store.keys.shared:
            state.summary.upgraded = upgrade_legacy(store, settings, logger)
        _start_run(con, state, only_writer=not store.keys.shared)
        async with Fetcher(settings.fetch) as fetcher:
            sources = select(await resolve_sources(settings.feeds, fetcher, settings.secrets), shard)
            results = await _read_feeds(con, fetcher, sources, stages, state, settings.secrets)
            entries = new_entries(store, results, retry_store.waiting(con))
            await _read_pages(store, fetcher, entries, settings, stages, state, progress)
        _record_feeds(con, results, state)  # validators only once every entry is stored: a crash re-reads the feed
        state.summary.alerts = stages.alerts(con, settings, **({"keys": store.keys} if store.keys.shared else {}))
        state.summary.commit_retries = commit_retries() - retries_before
        _finish_run(con, state, "completed")
        _write_feeds(con, settings, logger)
        _maintain(store, settings, logger, shard, stored_any=state.summary.articles_new > 0)
    except BaseException:
        _finish_run(con, state, "failed")
        raise
    finally:
        store.close()
        logger.info("search index upkeep: %.3fs", store.search_s)
    return state.summary


def _claim_scope(store: Store, shard: Shard | None) -> None:
    """With shared keys: hold this run's scope (its shard, or all feeds) for the run, or raise RunInProgress."""
    scope = f"shard {shard}" if shard else "all feeds"
    if store.keys.shared and not store.keys.try_lock(scope):
        raise RunInProgress(f"another newsmon run is reading {scope} of this store")


async def _read_feeds(con, fetcher: Fetcher, sources: Sequence[FeedSource], stages: Stages,
                      state: _RunState, secrets: Sequence[str] = ()) -> list[FeedResult]:
    write(con, lambda con: feed_store.sync_feeds(con, sources))
    due, waiting = due_feeds(feed_store.feed_states(con), sources, state.started)
    state.summary.feeds_backing_off = len(waiting)
    results = [_redacted(r, secrets) for r in await asyncio.gather(*(stages.fetch_feed(fetcher, s) for s in due))]
    for r in results:
        state.logger.info("feed %s: %s%s, %d entries, %.2fs", r.response.source.url, r.response.outcome,
                 f" ({r.error})" if r.error else "", len(r.entries), r.elapsed_s)
    state.summary.add_feeds(results)
    return results


def _redacted(result: FeedResult, secrets: Sequence[str]) -> FeedResult:
    """The feed's answer with every secret (a ${VAR} in its URL) out of what gets stored and logged."""
    if not secrets:
        return result
    r = result.response
    attempts = tuple(replace(a, url=redact(a.url, secrets), error=redact(a.error, secrets)) for a in r.attempts)
    response = replace(r, final_url=redact(r.final_url, secrets), error=redact(r.error, secrets), attempts=attempts)
    return replace(result, response=response, error=redact(result.error, secrets))


def due_feeds(states: dict[str, tuple], sources: Sequence[FeedSource],
              now: datetime) -> tuple[list[FeedSource], list[FeedSource]]:
    """Split feeds into (due now, carrying stored validators) and (backing off after failures)."""
    due, waiting = [], []
    for s in sources:
        etag, last_modified, next_check_at, _failures = states.get(s.url, (None, None, None, 0))
        source = replace(s, etag=etag, last_modified=last_modified)
        (waiting if next_check_at is not None and next_check_at > now else due).append(source)
    return due, waiting


async def _read_pages(store: Store, fetcher: Fetcher, entries: list[FeedEntry], settings: Settings, stages: Stages,
                      state: _RunState, progress) -> None:
    ordered = interleave_by_host(entries)
    batches = iter([ordered[i:i + PAGE_BATCH] for i in range(0, len(ordered), PAGE_BATCH)])
    if progress:
        progress.start(len(entries))
    with extraction_pool(len(entries), settings.extract_workers) as pool:
        running: set[asyncio.Future] = set()

        def launch() -> None:
            batch = next(batches, None)
            if batch:
                running.add(asyncio.ensure_future(stages.fetch_and_extract(fetcher, batch, pool, settings.dedup)))

        # A bounded window: downloads run ahead of the extraction workers by a few batches at most,
        # so memory stays flat however many pages a run has.
        for _ in range(BATCHES_IN_FLIGHT):
            launch()
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                batch = finished.result()
                # Each batch is committed as soon as it is ready, so a killed run keeps what it finished.
                # In a thread (DuckDB releases the GIL), so downloads go on while it is written; batches
                # are still stored one at a time, as the single connection requires.
                result = await asyncio.to_thread(stages.store, store, batch, settings, state.run_id)
                state.summary.add_batch(batch, result)
                if progress:
                    progress.advance(len(batch.articles))
                launch()


def interleave_by_host(entries: Sequence[FeedEntry]) -> list[FeedEntry]:
    """Round-robin over hosts: every batch spreads over many sites, so one big site cannot stall the window."""
    queues: dict[str, deque[FeedEntry]] = {}
    for entry in entries:
        queues.setdefault(host_of(entry.url), deque()).append(entry)
    ordered: list[FeedEntry] = []
    while queues:
        for host in list(queues):
            ordered.append(queues[host].popleft())
            if not queues[host]:
                del queues[host]
    return ordered


def _record_feeds(con, results: Sequence[FeedResult], state: _RunState) -> None:
    stored = feed_store.feed_rows(con, [r.response.source.url for r in results])
    states = [next_state(stored.get(r.response.source.url, {}), r.response, r.error, state.started) for r in results]
    attempts = [a for r in results for a in r.response.attempts]

    def record(con) -> None:  # one statement for every feed: one snapshot, not one per feed
        feed_store.save_feed_states(con, states)
        feed_store.log_attempts(con, attempts, state.run_id)

    write(con, record)


def _write_feeds(con, settings: Settings, logger) -> None:
    try:
        write_alert_feeds(con, settings)
    except Exception as exc:  # the hits are recorded; the next run writes the files again
        logger.warning("writing the alert feeds to %s failed: %s", settings.alert_feeds.atom_dir, exc)


def _maintain(store: Store, settings: Settings, logger, shard: Shard | None, stored_any: bool = True) -> None:
    """Upkeep after the run; a shard leaves it to the sharded flow, which runs it once for all shards."""
    if shard is not None and store.keys.shared:
        return
    storage = settings.storage
    compact_elsewhere = compactor(settings)  # a crash in DuckLake's rewrite must not take the finished run down
    try:
        if store.keys.shared:
            maintain_shared(store.con, store.keys, storage.snapshot_retention_days, compactor=compact_elsewhere)
        else:
            # A run that stored no article has nothing to merge (its feed-state rows stay inlined in the
            # catalog until the next run with articles flushes them): compaction cost 1 s of a 4 s no-op run.
            maintain(store.con, storage.snapshot_retention_days, compact=stored_any, compactor=compact_elsewhere)
    except Exception as exc:  # the run's data is committed; upkeep is retried by the next run
        logger.warning("maintenance failed, the next run retries it: %s", exc)


def _start_run(con, state: _RunState, only_writer: bool) -> None:
    interrupted: list[int] = [0]

    def start(con) -> None:
        # Runs left 'running' died, unless other writers share the store (a shard may be running now).
        interrupted[:] = [run_store.fail_interrupted(con, state.started) if only_writer else 0]
        run_store.start(con, state.run_id, state.started)

    write(con, start)
    if interrupted[0]:
        state.logger.warning("%d earlier run(s) ended without recording it (killed, or the disk was full): "
                             "marked failed", interrupted[0])


def _finish_run(con, state: _RunState, status: str) -> None:
    try:
        write(con, lambda con: run_store.finish(con, state.run_id, status, datetime.now(timezone.utc),
                                                state.summary.to_json()))
    except Exception:  # after a crash the connection may be unusable; the run row then stays 'running'
        log.debug("could not record run status", exc_info=True)
