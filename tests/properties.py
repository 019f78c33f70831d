"""What must hold for any input at newsmon's boundaries, one check per entry point.

Each check runs the entry point newsmon itself uses on one input, asserts the properties its
outcome must have, and returns a short label of that outcome (so a fuzzer can count distinct
outcomes). A check raises AssertionError when a property fails; any other exception escaping
is a failure too, since every input must end as an outcome or a config error:

    config   flows.config.load_settings      -> Settings | ConfigError naming file, key, problem
    rules    alerts.query.parse               -> a rule the matcher and the search index accept | QueryError
    feeds    ingest.parse.parse_feed          -> ParsedFeed | FeedParseError (recorded as parse_error)
    extract  ingest.extract.extract_article   -> Article | None (then the feed-summary Article)
    urls     ingest.urls.canonical_url        -> a canonical URL, canonical again unchanged

Used by tests/test_properties.py and bench/fuzz.py, with the strategies of tests/strategies.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from hypothesis import strategies as st

from tests import strategies as S

FETCHED_AT = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)
OPML = (b'<?xml version="1.0"?><opml version="2.0"><body>'
        b'<outline text="w" xmlUrl="https://example.org/rss.xml"/></body></opml>')


# ---------------------------------------------------------------------------------------------- config


def load_config(data: bytes, folder: Path):
    """load_settings on `data` written as folder/newsmon.toml: Settings, or the ConfigError it raised."""
    from flows.config import ConfigError, load_settings

    (folder / "subscriptions.opml").write_bytes(OPML)  # the seeds' [[feeds]] opml
    path = folder / "newsmon.toml"
    path.write_bytes(data)
    try:
        return load_settings(path, environ=S.config_environ())
    except ConfigError as exc:
        return exc


def check_config(data: bytes, folder: Path) -> str:
    """Settings within every documented range, or one ConfigError line naming the file, without secrets."""
    return _config_label(load_config(data, folder), folder)


def check_config_leaf(table: dict, path: tuple, folder: Path) -> str:
    """A valid seed with one value replaced: any ConfigError names a key inside the table holding that value."""
    from flows.config import ConfigError

    outcome = load_config(S.toml_text(table).encode(), folder)
    if isinstance(outcome, ConfigError):
        where = key_name(path[:-1] if len(path) > 1 else path)
        assert outcome.key.startswith(where), (str(outcome), path)
    return _config_label(outcome, folder)


def _config_label(outcome, folder: Path) -> str:
    from flows.config import ConfigError

    if not isinstance(outcome, ConfigError):
        assert_settings_in_range(outcome)
        return "Settings"
    message = str(outcome)
    assert "\n" not in message and "\r" not in message, message
    assert outcome.path == folder / "newsmon.toml", outcome.path
    assert message == (f"{outcome.path}: {outcome.key}: {outcome.problem}" if outcome.key
                       else f"{outcome.path}: {outcome.problem}"), message
    assert_no_secret(message)
    return "ConfigError " + (re.sub(r"\[\d+\]( \(.*\))?", "[]", outcome.key) or outcome.problem.split(":")[0])


def valid_seed_tables(folder: Path) -> tuple[dict, ...]:
    """The seed configs that load as they are: a replaced value is then the only thing that can be wrong."""
    from flows.config import Settings

    return tuple(table for table in S.seed_tables()
                 if isinstance(load_config(S.toml_text(table).encode(), folder), Settings))


def key_name(path: tuple) -> str:
    """('alerts', 0, 'query') -> 'alerts[0].query', as config errors name keys."""
    from flows.config import one_line

    return one_line("".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip("."))


def assert_no_secret(text: str) -> None:
    """No ${VAR} value stands as a whole token in `text` (the redaction promise, README *Secrets*)."""
    for secret in S.config_environ().values():
        assert not re.search(f"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text), (secret, text)


def assert_settings_in_range(settings) -> None:
    """Every number finite and inside the range the README documents; every reference resolved."""
    from alerts.query import parse
    from flows.config import CHANNEL_RANGES, DEDUP_RANGES, FETCH_RANGES, cron_problem, url_problem

    for f in fields(settings.fetch):
        value = getattr(settings.fetch, f.name)
        if f.name in FETCH_RANGES:
            assert _within(value, FETCH_RANGES[f.name]) and math.isfinite(value), (f.name, value)
    for name in ("shingle", "min_words", "near_window_days"):
        assert _within(getattr(settings.dedup, name), DEDUP_RANGES[name]), name
    assert 0 < settings.dedup.near_threshold <= 1
    assert 0 <= settings.storage.snapshot_retention_days <= 36500
    for channel in settings.channels.values():
        for name, limits in CHANNEL_RANGES.items():
            value = getattr(channel, name, None)
            assert value is None or (_within(value, limits) and math.isfinite(value)), (channel.name, name, value)
    for feed in settings.feeds:
        assert sum(x is not None for x in (feed.url, feed.opml, feed.site)) == 1, feed
        assert all(url_problem(u) is None for u in (feed.url, feed.site) if u is not None), feed
    names = [alert.rule.name for alert in settings.alerts]
    assert len(names) == len(set(names))
    for alert in settings.alerts:
        assert set(alert.channels) <= set(settings.channels), alert
        assert alert.rule.node == parse(alert.rule.query)
        assert 0 <= alert.cooldown_s and FETCHED_AT - timedelta(seconds=alert.cooldown_s)  # the run's arithmetic
    assert cron_problem(settings.schedule.ingest) is None and cron_problem(settings.schedule.digest) is None


def _within(value: float, limits: tuple[float, float]) -> bool:
    return limits[0] <= value <= limits[1]


# ---------------------------------------------------------------------------------------------- rules


def check_rule(query: str, folder: Path | None = None) -> str:
    """A QueryError with a column inside the text, or a rule that the matcher, the search index and its
    own words accept: an article holding the words of a rule without NOT is a hit."""
    from alerts.match import match_article
    from alerts.query import Not, QueryError, Rule, compile_rules, parse, triggers
    from search.query import compile_query

    try:
        node = parse(query)
    except QueryError as exc:
        assert 1 <= exc.column <= len(query) + 1, (query, exc.column)
        assert str(exc) == f"{exc.message} at column {exc.column}"
        return "QueryError " + re.sub(r"'[^']*'", "'…'", exc.message)
    assert triggers(node) is not None, query
    matcher = compile_rules([Rule("r", query, node)])
    compile_query(node)
    if not _contains(node, Not):
        text = " ".join(rule_words(node))
        hits = match_article(matcher, 1, _article(text, text))
        assert [hit.alert for hit in hits] == ["r"], (query, text)
    return "rule " + type(node).__name__


def rule_words(node) -> list[str]:
    """The words of every term under `node`, in query order, NEAR pairs side by side."""
    from alerts.query import And, Near, Or, Term

    if isinstance(node, Term):
        return list(node.words)
    if isinstance(node, Near):
        return list(node.left.words) + list(node.right.words)
    if isinstance(node, (And, Or)):
        return [w for child in node.children for w in rule_words(child)]
    return []


def _contains(node, kind: type) -> bool:
    if isinstance(node, kind):
        return True
    children = getattr(node, "children", None) or ([node.child] if hasattr(node, "child") else [])
    return any(_contains(child, kind) for child in children)


def _article(title: str, text: str):
    from ingest.dedup import content_hash
    from ingest.models import Article

    return Article(url=S.PAGE_URL, feed_url=S.FEED_URL, title=title, author=None, published_at=None,
                   date_source=None, fetched_at=FETCHED_AT, language=None, text=text,
                   content_hash=content_hash(text), extraction="trafilatura", source_url=S.PAGE_URL,
                   word_count=len(text.split()))


# ---------------------------------------------------------------------------------------------- feeds


def check_feed(body: bytes, folder: Path | None = None) -> str:
    """A FeedParseError (what a run records as parse_error), or entries with canonical URLs and UTC times."""
    from ingest.parse import FeedParseError, parse_feed
    from ingest.urls import canonical_url

    try:
        parsed = parse_feed(body, S.FEED_URL)
    except FeedParseError as exc:
        assert str(exc), "a parse error says why"
        return "FeedParseError"
    for entry in parsed.entries:
        assert entry.feed_url == S.FEED_URL
        assert canonical_url(entry.url) == entry.url, entry.url
        assert entry.published is None or entry.published.utcoffset().total_seconds() == 0, entry.published
        assert entry.title is None or (entry.title and entry.title == entry.title.strip()), entry.title
    assert parsed.entries or parsed.version, "an empty result is a feed of a known format"
    flags = (" warning" if parsed.warning else "") + ("" if parsed.entries else " empty")
    return f"feed {parsed.version or '?'}{flags}"


def check_generated_feed(body: bytes, items: list[dict]) -> str:
    """A well-formed feed gives one entry per item, in order, with its canonical link, title and time."""
    from ingest.parse import parse_feed
    from ingest.urls import canonical_url

    label = check_feed(body)
    parsed = parse_feed(body, S.FEED_URL)
    assert [e.url for e in parsed.entries] == [canonical_url(i["link"], base=S.FEED_URL) for i in items]
    assert [e.title for e in parsed.entries] == [i["title"].strip() or None for i in items]
    assert [e.published for e in parsed.entries] == [S.aware(i["published"]) for i in items]
    return label


# ---------------------------------------------------------------------------------------------- extraction


def check_page(body: bytes, folder: Path | None = None) -> str:
    """An Article (tidy text long enough to be a story, canonical URL on the page's site, hash of its text),
    or None and then the feed-summary Article built from the same bytes as summary."""
    from ingest.dedup import content_hash
    from ingest.extract import MIN_TEXT_CHARS, article_from_entry, extract_article, tidy_text
    from ingest.models import OK, FeedEntry, FetchedPage
    from ingest.urls import canonical_url, same_site

    summary = body[:4000].decode("utf-8", "replace")
    entry = FeedEntry(S.FEED_URL, "guid-1", S.PAGE_URL, " Titre du flux ", None, summary, None)
    article = extract_article(FetchedPage(entry, OK, 200, S.PAGE_URL, body, "text/html", FETCHED_AT))
    if article is None:
        article = article_from_entry(entry, FETCHED_AT, S.PAGE_URL)
        assert article.extraction == "feed_summary" and article.url == canonical_url(S.PAGE_URL)
    else:
        assert len(article.text) >= MIN_TEXT_CHARS and article.extraction == "trafilatura"
        assert same_site(article.url, S.PAGE_URL), article.url
    assert tidy_text(article.text) == article.text
    assert article.content_hash == content_hash(article.text) and article.word_count == len(article.text.split())
    assert canonical_url(article.url) == article.url, article.url
    assert article.language is None or re.fullmatch(r"[a-z]{2,3}", article.language), article.language
    assert article.published_at is None or article.published_at.tzinfo is not None
    assert (article.feed_url, article.source_url) == (S.FEED_URL, S.PAGE_URL)
    return f"{article.extraction} {article.language or '?'} {article.date_source or 'undated'}"


# ---------------------------------------------------------------------------------------------- URLs


def check_url(url: str, base: str | None = None) -> str:
    """canonical_url returns a string for any text, and canonical again is the same string."""
    from ingest.urls import canonical_url, url_id

    out = canonical_url(url, base=base)
    assert isinstance(out, str)
    assert canonical_url(out) == out, (url, out, canonical_url(out))
    assert url_id(out) == url_id(canonical_url(url, base=base))
    return "url " + ((urlsplit(out).scheme or "without scheme") if _splits(out) else "unparsed")


def check_http_url(url: str) -> str:
    """A well-formed http(s) link: lower-case scheme and host, no fragment, no default port, no trackers."""
    label = check_url(url)
    from ingest.urls import canonical_url

    parts = urlsplit(canonical_url(url))
    assert parts.scheme in ("http", "https") and not parts.fragment, parts
    assert parts.netloc == parts.netloc.lower(), parts
    assert not parts.netloc.endswith({"http": ":80", "https": ":443"}[parts.scheme]), parts
    assert not [k for k, _ in parse_qsl(parts.query) if k.startswith("utm_") or k in ("fbclid", "gclid")], parts
    return label


def _splits(url: str) -> bool:
    try:
        urlsplit(url)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """One entry point to fuzz: what to feed it and the check that runs it."""

    name: str
    inputs: Callable[[], st.SearchStrategy]  # built on first use: the seeds are read from disk then
    check: Callable[[Any, Path], str]


def _check_url_pair(pair: tuple[str, str | None], folder: Path) -> str:
    return check_url(*pair)


# The fuzzer reads every seed, up to 1 MB; the property tests keep to the smaller ones (tests/test_properties.py).
TARGETS = {target.name: target for target in (
    Target("config", S.config_files, check_config),
    Target("rules", S.rule_texts, check_rule),
    Target("feeds", lambda: S.feed_bodies(1_000_000), check_feed),
    Target("extract", lambda: S.page_bodies(1_000_000), check_page),
    Target("urls", lambda: st.tuples(S.any_urls(), st.one_of(st.none(), S.any_urls())), _check_url_pair),
)}
