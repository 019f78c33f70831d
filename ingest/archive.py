"""Records from archive files (another tool's export, a backfill) -> Article; pure apart from reading the file.

Columns: `url` and `text` required; `title`, `published_at` (ISO 8601 text, or a Unix timestamp
in seconds or milliseconds), `language`, `author` and `feed_url` optional. Parquet rows are read by
storage/imports.py; JSON Lines (.jsonl, .jsonl.gz) here.
"""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from ingest.dedup import DedupParams, hash_of_normalised, normalise_text, signatures_of_normalised
from ingest.models import Article
from ingest.urls import canonical_url

IMPORT = "import"
OPTIONAL_TEXT = ("title", "language", "author", "feed_url")


class BadRecord(ValueError):
    """A record that cannot become an article (the message says why)."""


def jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for every non-blank line of a .jsonl or .jsonl.gz file (parsed by json_record)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, line


def json_record(line: str) -> Any:
    """The object on one JSON Lines line, or a BadRecord saying why there is none."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRecord(f"not JSON: {exc.msg} at column {exc.colno}")


def batch_records(batch: Any) -> list[dict[str, Any]]:
    """The rows of an Arrow record batch as dicts (timestamps finer than microseconds are truncated)."""
    import pyarrow as pa

    columns = []
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            column = column.cast(pa.timestamp("us", field.type.tz), safe=False)
        columns.append(column.to_pylist())
    names = batch.schema.names
    return [dict(zip(names, values)) for values in zip(*columns)]


def article_from_record(record: Any, imported_at: datetime) -> tuple[Article, str]:
    """Validate one record; return the Article and its normalised text (raises BadRecord)."""
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, Mapping):
        raise BadRecord(f"expected an object, got {type(record).__name__}")
    url = _required_text(record, "url")
    if not url.startswith(("http://", "https://")):
        raise BadRecord(f"url must be an http(s) URL, got {url[:80]!r}")
    text = _required_text(record, "text")
    optional = {key: _optional_text(record, key) for key in OPTIONAL_TEXT}
    canonical = canonical_url(url)
    norm = normalise_text(text)
    article = Article(url=canonical, feed_url=optional["feed_url"], title=optional["title"],
                      author=optional["author"], published_at=parse_timestamp(record.get("published_at")),
                      date_source=IMPORT if record.get("published_at") is not None else None,
                      fetched_at=imported_at, language=optional["language"], text=text,
                      content_hash=hash_of_normalised(norm), extraction=IMPORT, source_url=url,
                      word_count=norm.count(" ") + 1 if norm else 0)  # norm is single-spaced
    return article, norm


def features(norms: list[str], params: DedupParams) -> list[tuple[int, ...] | None]:
    """The MinHash signatures of normalised texts (one call for a whole chunk)."""
    return signatures_of_normalised(norms, params)


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 text (a trailing Z is UTC), a Unix time in s or ms, or a datetime; naive means UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            at = datetime.fromtimestamp(seconds, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise BadRecord(f"published_at is out of range: {value}") from None
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadRecord(f"published_at is not ISO 8601: {value[:40]!r}") from None
    else:
        raise BadRecord(f"published_at must be text or a number, got {type(value).__name__}")
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _required_text(record: Mapping, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"{key} is missing or empty")
    return value.strip() if key == "url" else value


def _optional_text(record: Mapping, key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRecord(f"{key} must be text, got {type(value).__name__}")
    return value or None
