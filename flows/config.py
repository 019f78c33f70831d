"""newsmon.toml -> frozen Settings, validated up front; the only reader of os.environ.

Every problem is reported as one line naming the file, the key and what is wrong
(`newsmon.toml: alerts[0].query: unbalanced parenthesis at column 14`).
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from datetime import datetime, timezone
from email.errors import HeaderParseError
from email.headerregistry import Address
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError

from alerts.channels import DIGEST, IMMEDIATE, AppriseChannel, Channel, EmailChannel, WebhookChannel
from alerts.query import QueryError, Rule, parse
from ingest.dedup import DedupParams, InvalidDedupParam
from ingest.models import FetchPolicy
from storage.shared import S3Access, SharedCatalog

DEFAULT_CONFIG = "newsmon.toml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^([0-9]{1,12})\s*([smhd])$")
MAX_COOLDOWN_S = 3650 * 86400  # ten years; far more would not fit the run's date arithmetic (timedelta)
_DIGEST_SCHEDULES = ("hourly", "daily", "weekly")


class ConfigError(Exception):
    """A problem in the config file; str() is the one line shown to the user."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        key, problem = one_line(key), one_line(problem)
        super().__init__(f"{one_line(str(path))}: {key}: {problem}" if key else f"{one_line(str(path))}: {problem}")
        self.path, self.key, self.problem = path, key, problem


def one_line(text: str) -> str:
    """`text` with control characters and line separators as escapes: a TOML key may hold a newline,
    and the error naming it must still be one line."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class FeedConfig:
    """One [[feeds]] entry: exactly one of url, opml, site."""

    url: str | None = None
    opml: Path | None = None
    site: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertConfig:
    """One [[alerts]] rule and where its hits go."""

    rule: Rule
    channels: tuple[str, ...]
    cooldown_s: int = 0
    max_per_run: int = 0  # 0 = unlimited


@dataclass(frozen=True)
class Schedule:
    """Cron expressions for `newsmon serve` and prefect.yaml."""

    ingest: str = "*/15 * * * *"
    digest: str = "0 7 * * *"
    timezone: str = "UTC"


# The range of every number in the file (README, *Configuration*): beyond these a value is a typo or
# an attack on the run itself (`retries = 2**63-1` with no backoff is a flood, `timeout_s = nan` no deadline).
FETCH_RANGES: dict[str, tuple[float, float]] = {
    "timeout_s": (0.1, 600), "connect_timeout_s": (0.1, 120), "max_bytes": (1024, 1_000_000_000),
    "concurrency": (1, 1000), "per_host": (1, 100), "per_host_delay_s": (0, 3600), "retries": (0, 10),
    "backoff_s": (0, 60), "max_retry_after_s": (0, 3600), "max_redirects": (0, 20),
}
CHANNEL_RANGES: dict[str, tuple[float, float]] = {
    "timeout_s": (0.1, 300), "retries": (0, 10), "max_attempts": (1, 1000), "smtp_port": (1, 65535),
}
DEDUP_RANGES: dict[str, tuple[float, float]] = {"shingle": (1, 20), "min_words": (1, 100_000),
                                                "near_window_days": (1, 3650)}
# Each worker holds a parsed page and trafilatura (about 60-100 MB): more than this is a typo, not a machine.
MAX_EXTRACT_WORKERS = 64
ALERT_RANGES: dict[str, tuple[float, float]] = {"min_words": (0, 1_000_000), "max_per_run": (0, 1_000_000)}


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)


@dataclass(frozen=True)
class StoragePolicy:
    """How the store is kept: DuckDB's memory cap and how long old snapshots stay for time travel."""

    memory_limit: str = "2GB"
    snapshot_retention_days: int = 30
    shared: SharedCatalog | None = None  # [storage] catalog = "postgres:...": several machines write the lake


@dataclass(frozen=True)
class AlertFeeds:
    """[alert_feeds]: an Atom file per alert rule, rewritten after each run."""

    atom_dir: Path | None = None  # None: no files written (`newsmon alerts feed NAME` still prints one)
    entries: int = 50  # latest hits per feed


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated."""

    path: Path
    database: Path
    storage: StoragePolicy = field(default_factory=StoragePolicy)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    dedup: DedupParams = field(default_factory=DedupParams)
    feeds: tuple[FeedConfig, ...] = ()
    alerts: tuple[AlertConfig, ...] = ()
    channels: Mapping[str, Channel] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)
    alert_feeds: AlertFeeds = field(default_factory=AlertFeeds)
    extract_workers: int = 0  # [extract] workers: extraction processes, 0 = one per CPU (flows/extraction.py)
    # Every value a ${VAR} expanded to: redacted from whatever newsmon writes (store, logs, errors).
    secrets: tuple[str, ...] = field(default=(), repr=False)


def config_path(cli_value: str | None) -> Path:
    """--config, else $NEWSMON_CONFIG, else ./newsmon.toml."""
    return Path(cli_value or os.environ.get("NEWSMON_CONFIG") or DEFAULT_CONFIG)


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the whole file; raise ConfigError on the first problem found."""
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found (use --config or $NEWSMON_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from None
    except ValueError as exc:  # TOMLDecodeError, and int() refusing an integer of more than 4,300 digits
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return _Reader(path, env).settings(raw)


class _Reader:
    """Walks the parsed TOML, checking keys and types, expanding ${VAR}."""

    def __init__(self, path: Path, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.secrets: list[str] = []

    def fail(self, key: str, problem: str) -> ConfigError:
        from ingest.redact import redact

        # The key too: it may hold a value read from the environment (an alert's name).
        return ConfigError(self.path, redact(key, self.secrets), redact(problem, self.secrets))

    def settings(self, raw: dict) -> Settings:
        self.only(raw, "", {"storage", "fetch", "dedup", "feeds", "alerts", "channels", "schedule", "alert_feeds",
                            "extract"})
        storage = self.table(raw, "storage")
        self.only(storage, "storage", {"database", "memory_limit", "snapshot_retention_days", "catalog", "data_path",
                                       "s3"})
        channels = self.channels(self.table(raw, "channels"))
        database = self.database(self.string(storage, "storage.database", "database", "data/newsmon.duckdb"))
        feeds = tuple(self.feed(f, i) for i, f in enumerate(self.array(raw, "feeds")))
        return Settings(
            path=self.path,
            database=database,
            storage=self.storage_policy(storage),
            fetch=self.dataclass_table(raw, "fetch", FetchPolicy),
            dedup=self.dedup(self.table(raw, "dedup")),
            feeds=feeds,
            alerts=self.alerts(self.array(raw, "alerts"), channels),
            channels=channels,
            schedule=self.schedule(self.table(raw, "schedule")),
            alert_feeds=self.alert_feeds(self.table(raw, "alert_feeds")),
            extract_workers=self.extract_workers(self.table(raw, "extract")),
            secrets=tuple(dict.fromkeys(self.secrets)),
        )

    # -- generic checks -------------------------------------------------------------
    def only(self, table: dict, where: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                name = f"{where}.{key}" if where else key
                raise self.fail(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def table(self, raw: dict, key: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), got {_kind(value)}")
        return value

    def array(self, raw: dict, key: str) -> list[dict]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, f"must be an array of tables ([[{key}]]), got {_kind(value)}")
        return value

    def typed(self, table: dict, key: str, name: str, kind: type | tuple, default: Any) -> Any:
        value = table.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is not None and (not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float))):
            raise self.fail(key, f"must be {_kind_name(kind)}, got {_kind(value)}")
        return value

    def string(self, table: dict, key: str, name: str, default: str | None = None) -> str | None:
        value = self.typed(table, key, name, str, default)
        return None if value is None else self.expand(key, value)

    def strings(self, table: dict, key: str, name: str) -> tuple[str, ...]:
        value = table.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of strings, got {_kind(value)}")
        return tuple(self.expand(key, v) for v in value)

    def expand(self, key: str, value: str) -> str:
        def lookup(match: re.Match) -> str:
            name = match.group(1)
            if name not in self.env:
                raise self.fail(key, f"environment variable {name} is not set")
            if self.env[name]:
                self.secrets.append(self.env[name])
            return self.env[name]

        return _VAR.sub(lookup, value)

    def bounded(self, key: str, value: float | int, lo: float, hi: float) -> None:
        """A finite number within [lo, hi]."""
        if isinstance(value, float) and not math.isfinite(value):  # (an int is finite, and may not fit a float)
            raise self.fail(key, f"must be a finite number, got {value}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {_number(lo)} and {_number(hi)}, got {_number(value)}")

    def number(self, table: dict, key: str, name: str, kind: type, default: Any, limits: tuple[float, float]) -> Any:
        """A typed number within its documented range."""
        value = self.typed(table, key, name, kind, default)
        if value is not None:
            self.bounded(key, value, *limits)
        return value

    def http_url(self, key: str, value: str | None) -> None:
        """An http(s) URL with a host and a valid port."""
        problem = url_problem(value or "")
        if problem:
            raise self.fail(key, problem)

    def database(self, value: str) -> Path:
        """The store's path: a file name in a folder newsmon can create and write."""
        if not value or not value.strip():
            raise self.fail("storage.database", "must not be empty")
        path = self.relative("storage.database", value)
        problem = store_path_problem(path)
        if problem:
            raise self.fail("storage.database", problem)
        return path

    def relative(self, key: str, value: str) -> Path:
        # Paths in the file are relative to the file, so a scheduled run from any folder finds the same data.
        if "\x00" in value:  # no file system takes it; pathlib raises ValueError
            raise self.fail(key, "must not contain a NUL character")
        try:
            candidate = Path(value).expanduser()
        except RuntimeError:  # '~name/...' for a user this machine does not know
            raise self.fail(key, f"cannot expand {value.split('/')[0]!r}: no such user") from None
        return candidate if candidate.is_absolute() else (self.path.parent / candidate).resolve()

    def dataclass_table(self, raw: dict, name: str, cls: type) -> Any:
        table = self.table(raw, name)
        known = {f.name: f for f in fields(cls)}
        self.only(table, name, set(known))
        values = {}
        for key, f in known.items():
            if key in table:
                kind = type(f.default)
                value = self.typed(table, f"{name}.{key}", key, kind, f.default)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.bounded(f"{name}.{key}", value, *FETCH_RANGES[key])
                values[key] = self.expand(f"{name}.{key}", value) if isinstance(value, str) else value
        return cls(**values)

    # -- sections -------------------------------------------------------------------
    def extract_workers(self, table: dict) -> int:
        self.only(table, "extract", {"workers"})
        workers = self.typed(table, "extract.workers", "workers", int, 0)
        if not 0 <= workers <= MAX_EXTRACT_WORKERS:
            raise self.fail("extract.workers", f"must be between 0 and {MAX_EXTRACT_WORKERS}, got {workers}")
        return workers

    def storage_policy(self, table: dict) -> StoragePolicy:
        memory = self.string(table, "storage.memory_limit", "memory_limit", StoragePolicy.memory_limit)
        if not _MEMORY.match(memory):
            raise self.fail("storage.memory_limit", f"must be a size such as \"2GB\" or \"512MB\", got {memory!r}")
        days = self.typed(table, "storage.snapshot_retention_days", "snapshot_retention_days", int,
                          StoragePolicy.snapshot_retention_days)
        if not 0 <= days <= 36500:
            raise self.fail("storage.snapshot_retention_days", f"must be between 0 and 36500, got {days}")
        return StoragePolicy(memory_limit=memory.replace(" ", ""), snapshot_retention_days=days,
                             shared=self.shared_catalog(table))

    def shared_catalog(self, table: dict) -> SharedCatalog | None:
        catalog = self.string(table, "storage.catalog", "catalog")
        data_path = self.string(table, "storage.data_path", "data_path")
        s3 = self.table(table, "s3") if "s3" in table else None
        if catalog is None:
            for key, value in (("data_path", data_path), ("s3", s3)):
                if value is not None:
                    raise self.fail(f"storage.{key}", "only goes with storage.catalog (a PostgreSQL catalog)")
            return None
        if not catalog.startswith("postgres:"):
            raise self.fail("storage.catalog", f"must start with 'postgres:' (a libpq connection string), "
                                               f"got {catalog.split(':')[0]!r}")
        conninfo = catalog.removeprefix("postgres:").strip()
        problem = _conninfo_problem(conninfo)
        if problem:
            raise self.fail("storage.catalog", problem)
        if not data_path:
            raise self.fail("storage.data_path", "is required with a PostgreSQL catalog: a folder every machine "
                                                 "mounts at the same path, or s3://bucket/prefix")
        if data_path.startswith("s3://"):
            if len(data_path) <= len("s3://") or data_path[5] == "/":
                raise self.fail("storage.data_path", f"needs a bucket: s3://bucket/prefix, got {data_path!r}")
            if s3 is None:
                raise self.fail("storage.s3", "is required with an s3:// data_path (key_id, secret, region, endpoint)")
            return SharedCatalog(conninfo, data_path, self.s3_access(s3))
        if "://" in data_path or not Path(data_path).is_absolute():
            raise self.fail("storage.data_path", f"must be an absolute folder (the same on every machine) or "
                                                 f"s3://bucket/prefix, got {data_path!r}")
        if s3 is not None:
            raise self.fail("storage.s3", "only goes with an s3:// data_path")
        return SharedCatalog(conninfo, data_path)

    def s3_access(self, table: dict) -> S3Access:
        self.only(table, "storage.s3", {"key_id", "secret", "region", "endpoint", "url_style", "use_ssl"})
        values = {k: self.string(table, f"storage.s3.{k}", k) for k in ("key_id", "secret", "region", "endpoint",
                                                                          "url_style")}
        for key in ("key_id", "secret"):
            if not values[key]:
                raise self.fail(f"storage.s3.{key}", "is required (use ${VAR} to read it from the environment)")
        if values["url_style"] not in (None, "path", "vhost"):
            raise self.fail("storage.s3.url_style", f"must be 'path' or 'vhost', got {values['url_style']!r}")
        use_ssl = self.typed(table, "storage.s3.use_ssl", "use_ssl", bool, True)
        return S3Access(use_ssl=use_ssl, **values)

    def dedup(self, table: dict) -> DedupParams:
        self.only(table, "dedup", {"near_threshold", "shingle", "min_words", "near_window_days"})
        threshold = self.typed(table, "dedup.near_threshold", "near_threshold", float, None)
        if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise self.fail("dedup.near_threshold", f"must be in (0, 1], got {threshold}")
        shingle = self.number(table, "dedup.shingle", "shingle", int, None, DEDUP_RANGES["shingle"])
        min_words = self.number(table, "dedup.min_words", "min_words", int, None, DEDUP_RANGES["min_words"])
        window = self.number(table, "dedup.near_window_days", "near_window_days", int, None,
                             DEDUP_RANGES["near_window_days"])
        given = {"near_threshold": threshold, "shingle": shingle, "min_words": min_words, "near_window_days": window}
        try:
            return DedupParams(**{k: v for k, v in given.items() if v is not None})
        except InvalidDedupParam as exc:
            raise self.fail(f"dedup.{exc.field}", exc.problem) from None

    def feed(self, table: dict, i: int) -> FeedConfig:
        where = f"feeds[{i}]"
        self.only(table, where, {"url", "opml", "site", "name", "tags"})
        sources = [k for k in ("url", "opml", "site") if k in table]
        if len(sources) != 1:
            raise self.fail(where, "needs exactly one of url, opml, site")
        url = self.string(table, f"{where}.url", "url")
        site = self.string(table, f"{where}.site", "site")
        for key, value in (("url", url), ("site", site)):
            if value is not None:
                self.http_url(f"{where}.{key}", value)
        opml = self.string(table, f"{where}.opml", "opml")
        if opml is not None and not opml.strip():  # an empty key would leave the feed with no source at all
            raise self.fail(f"{where}.opml", "must name an OPML file")
        opml_path = self.relative(f"{where}.opml", opml) if opml else None
        if opml_path is not None and not _is_file(opml_path):
            raise self.fail(f"{where}.opml", f"file not found: {opml_path}")
        return FeedConfig(url=url, opml=opml_path, site=site, name=self.string(table, f"{where}.name", "name"),
                          tags=self.strings(table, f"{where}.tags", "tags"))

    def alerts(self, tables: list[dict], channels: Mapping[str, Channel]) -> tuple[AlertConfig, ...]:
        out: list[AlertConfig] = []
        for i, table in enumerate(tables):
            alert = self.alert(table, i, channels)
            if any(a.rule.name == alert.rule.name for a in out):
                raise self.fail(f"alerts[{i}].name",
                                f"{alert.rule.name!r} is used by an earlier alert; names must be unique")
            out.append(alert)
        return tuple(out)

    def alert(self, table: dict, i: int, channels: Mapping[str, Channel]) -> AlertConfig:
        where = f"alerts[{i}]"
        self.only(table, where, {"name", "query", "channels", "feeds", "languages", "min_words", "cooldown",
                                 "max_per_run"})
        name = self.string(table, f"{where}.name", "name")
        query = self.string(table, f"{where}.query", "query")
        if not name or not query:
            raise self.fail(where, "needs a name and a query")
        where = f"alerts[{i}] ({name})"
        try:
            node = parse(query)
        except QueryError as exc:
            raise self.fail(f"{where}.query", str(exc)) from None
        names = self.strings(table, f"{where}.channels", "channels")
        for channel in names:
            if channel not in channels:
                raise self.fail(f"{where}.channels", f"channel {channel!r} is not defined in [channels]")
        min_words = self.number(table, f"{where}.min_words", "min_words", int, 0, ALERT_RANGES["min_words"])
        max_per_run = self.number(table, f"{where}.max_per_run", "max_per_run", int, 0, ALERT_RANGES["max_per_run"])
        from ingest.redact import redact

        # Feeds are known by their redacted URL (a ${VAR} secret never reaches the store), so are rule scopes.
        feeds = tuple(redact(f, self.secrets) for f in self.strings(table, f"{where}.feeds", "feeds"))
        rule = Rule(name=name, query=query, node=node, feeds=feeds,
                    languages=tuple(x.lower() for x in self.strings(table, f"{where}.languages", "languages")),
                    min_words=min_words)
        cooldown = self.duration(f"{where}.cooldown", self.string(table, f"{where}.cooldown", "cooldown"))
        return AlertConfig(rule=rule, channels=names, cooldown_s=cooldown, max_per_run=max_per_run)

    def alert_feeds(self, table: dict) -> AlertFeeds:
        self.only(table, "alert_feeds", {"atom_dir", "entries"})
        atom_dir = self.string(table, "alert_feeds.atom_dir", "atom_dir")
        entries = self.number(table, "alert_feeds.entries", "entries", int, AlertFeeds.entries, (1, 10_000))
        return AlertFeeds(atom_dir=self.relative("alert_feeds.atom_dir", atom_dir) if atom_dir else None,
                          entries=entries)

    def duration(self, key: str, value: str | None) -> int:
        if not value:
            return 0
        match = _DURATION.match(value.strip())
        if not match:
            raise self.fail(key, f"must be a duration like '30m', '6h' or '1d', got {value!r}")
        seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        if seconds > MAX_COOLDOWN_S:
            raise self.fail(key, f"must be at most 3650d, got {value!r}")
        return seconds

    def channels(self, table: dict) -> dict[str, Channel]:
        out: dict[str, Channel] = {}
        for name, body in table.items():
            where = f"channels.{name}"
            if not isinstance(body, dict):
                raise self.fail(where, f"must be a table, got {_kind(body)}")
            kind = body.get("type")
            builders = {"webhook": self.webhook, "email": self.email, "apprise": self.apprise}
            builder = builders.get(kind) if isinstance(kind, str) else None  # a list or table is no key
            if builder is None:
                raise self.fail(f"{where}.type", f"must be one of webhook, email, apprise, got {kind!r}")
            out[name] = builder(name, where, body)
        return out

    def delivery_common(self, where: str, body: dict) -> dict:
        mode = self.string(body, f"{where}.mode", "mode", IMMEDIATE)
        if mode not in (IMMEDIATE, DIGEST):
            raise self.fail(f"{where}.mode", f"must be 'immediate' or 'digest', got {mode!r}")
        schedule = self.string(body, f"{where}.schedule", "schedule", "daily" if mode == DIGEST else None)
        if mode == DIGEST and schedule not in _DIGEST_SCHEDULES:
            raise self.fail(f"{where}.schedule", f"must be one of {', '.join(_DIGEST_SCHEDULES)}, got {schedule!r}")
        retries = self.number(body, f"{where}.retries", "retries", int, 2, CHANNEL_RANGES["retries"])
        max_attempts = self.number(body, f"{where}.max_attempts", "max_attempts", int, 10,
                                   CHANNEL_RANGES["max_attempts"])
        return {"mode": mode, "schedule": schedule, "retries": retries, "max_attempts": max_attempts}

    def webhook(self, name: str, where: str, body: dict) -> WebhookChannel:
        self.only(body, where, {"type", "url", "secret", "format", "timeout_s", "retries", "max_attempts", "mode",
                                "schedule"})
        url = self.string(body, f"{where}.url", "url")
        self.http_url(f"{where}.url", url)
        fmt = self.string(body, f"{where}.format", "format", "json")
        if fmt not in ("json", "slack"):
            raise self.fail(f"{where}.format", f"must be 'json' or 'slack', got {fmt!r}")
        timeout = self.number(body, f"{where}.timeout_s", "timeout_s", float, 10.0, CHANNEL_RANGES["timeout_s"])
        common = self.delivery_common(where, body)
        if common["mode"] == DIGEST:
            raise self.fail(f"{where}.mode", "digest mode is for email channels; webhooks send one POST per hit")
        return WebhookChannel(name=name, url=url, secret=self.string(body, f"{where}.secret", "secret"), format=fmt,
                              timeout_s=timeout, **common)

    def email(self, name: str, where: str, body: dict) -> EmailChannel:
        self.only(body, where, {"type", "smtp_host", "smtp_port", "starttls", "ssl", "username", "password", "from",
                                "to", "timeout_s", "retries", "max_attempts", "mode", "schedule"})
        host = self.string(body, f"{where}.smtp_host", "smtp_host")
        sender = self.string(body, f"{where}.from", "from")
        to = self.strings(body, f"{where}.to", "to")
        for key, value in (("smtp_host", host), ("from", sender), ("to", to)):
            if not value:
                raise self.fail(f"{where}.{key}", "is required")
        if any(ord(c) < 32 or c == "\x7f" for c in host):
            raise self.fail(f"{where}.smtp_host", "must not contain control characters")
        for key, address in [("from", sender)] + [("to", a) for a in to]:
            problem = address_problem(address)
            if problem:
                raise self.fail(f"{where}.{key}", problem)
        starttls = self.typed(body, f"{where}.starttls", "starttls", bool, False)
        use_ssl = self.typed(body, f"{where}.ssl", "ssl", bool, False)
        if starttls and use_ssl:
            raise self.fail(f"{where}.ssl", "choose one of ssl (implicit TLS, port 465) and starttls (port 587)")
        port = self.number(body, f"{where}.smtp_port", "smtp_port", int, 465 if use_ssl else 587 if starttls else 25,
                           CHANNEL_RANGES["smtp_port"])
        timeout = self.number(body, f"{where}.timeout_s", "timeout_s", float, 20.0, CHANNEL_RANGES["timeout_s"])
        return EmailChannel(name=name, smtp_host=host, sender=sender, to=to, smtp_port=port, starttls=starttls,
                            ssl=use_ssl, username=self.string(body, f"{where}.username", "username"),
                            password=self.string(body, f"{where}.password", "password"), timeout_s=timeout,
                            **self.delivery_common(where, body))

    def apprise(self, name: str, where: str, body: dict) -> AppriseChannel:
        self.only(body, where, {"type", "urls", "retries", "max_attempts", "mode", "schedule"})
        urls = self.strings(body, f"{where}.urls", "urls")
        if not urls:
            raise self.fail(f"{where}.urls", "needs at least one Apprise URL")
        common = self.delivery_common(where, body)
        if common["mode"] == DIGEST:
            raise self.fail(f"{where}.mode", "digest mode is for email channels")
        return AppriseChannel(name=name, urls=urls, **common)

    def schedule(self, table: dict) -> Schedule:
        self.only(table, "schedule", {"ingest", "digest", "timezone"})
        values = {k: self.string(table, f"schedule.{k}", k) for k in ("ingest", "digest", "timezone") if k in table}
        for key in ("ingest", "digest"):
            if key in values:
                problem = cron_problem(values[key])
                if problem:
                    raise self.fail(f"schedule.{key}", problem)
        if "timezone" in values:
            try:
                from zoneinfo import ZoneInfo

                ZoneInfo(values["timezone"])
            except Exception:
                raise self.fail("schedule.timezone", f"unknown time zone {values['timezone']!r}") from None
        return Schedule(**values)


# libpq connection keywords newsmon accepts in [storage] catalog (a typo fails here, not at 3 a.m.).
_LIBPQ_KEYS = {"host", "hostaddr", "port", "dbname", "user", "password", "passfile", "connect_timeout",
               "client_encoding", "options", "application_name", "keepalives", "keepalives_idle",
               "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslmode", "sslcert", "sslkey",
               "sslrootcert", "sslcrl", "sslpassword", "target_session_attrs", "service", "channel_binding",
               "gssencmode", "krbsrvname", "require_auth", "sslnegotiation"}
_CONNINFO_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)\s*")


def _conninfo_problem(conninfo: str) -> str | None:
    """What is wrong with a libpq 'key=value ...' string, or None."""
    if not conninfo:
        return "the connection string after 'postgres:' is empty (e.g. \"postgres:host=db dbname=newsmon\")"
    position = 0
    while position < len(conninfo):
        match = _CONNINFO_PAIR.match(conninfo, position)
        if not match:
            return f"expected key=value at {conninfo[position:position + 20]!r}"
        if match.group(1) not in _LIBPQ_KEYS:
            return f"unknown connection keyword {match.group(1)!r}"
        position = match.end()
    return None


def _number(value: float) -> str:
    """1000000000 -> '1_000_000_000' (as TOML writes it), 0.5 -> '0.5'; an integer too long to read, by its size."""
    if isinstance(value, int):
        return f"{value:_}" if value.bit_length() <= 128 else f"a {value.bit_length()}-bit integer"
    return f"{int(value):_}" if value.is_integer() and abs(value) < 1e18 else f"{value:g}"


def url_problem(url: str) -> str | None:
    """Why `url` is not a usable http(s) URL (scheme, host, port), or None."""
    if any(ord(c) < 33 or c == "\x7f" for c in url):
        return "must be an http(s) URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError when out of 0-65535 or not a number
    except ValueError as exc:
        return f"must be an http(s) URL with a valid port ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http(s) URL"
    if not parts.hostname:
        return "must be an http(s) URL with a host name"
    if port == 0:
        return "must be an http(s) URL with a port between 1 and 65535"
    return None


def address_problem(address: str) -> str | None:
    """Why `address` is not one plain e-mail address (user@domain), or None."""
    if any(ord(c) < 32 or c == "\x7f" for c in address):
        return "must be one e-mail address, without line breaks or control characters"
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError) as exc:
        return f"must be one e-mail address such as news@example.org ({' '.join(str(exc).split())})"
    if not parsed.domain or parsed.addr_spec != address:
        return "must be one e-mail address such as news@example.org"
    return None


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a valid 5-field cron expression, or None."""
    if len(expression.split()) != 5:
        return f"must be a 5-field cron expression, got {expression!r}"
    try:
        CronSim(expression, datetime.now(timezone.utc))
    except (CronSimError, ValueError) as exc:
        return f"not a valid cron expression ({exc}): {expression!r}"
    return None


def store_path_problem(database: Path) -> str | None:
    """Why newsmon could not keep its store beside `database`, or None.

    The store is the folder `<name>.lake/` next to `database`: it (or the nearest existing folder
    above it) must be a writable directory, and `database` itself must not be a directory.
    """
    try:
        return _store_path_problem(database)
    except OSError as exc:  # a name longer than the file system allows, a loop of links, ...
        return f"cannot be used as a path: {exc.strerror or exc}"


def _store_path_problem(database: Path) -> str | None:
    from storage.paths import store_dir

    if database.is_dir():
        return f"{database} is a directory; give a file name such as {database / 'newsmon.duckdb'}"
    target = store_dir(database)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory, so {target} cannot be created"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable (read-only folder or file system), so the store cannot be written"
    return None


def _is_file(path: Path) -> bool:
    """path.is_file(), False for a path no file system could hold (too long a name)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _kind_name(kind: type | tuple) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, str(kind))
