"""Query results as JSON or CSV on stdout, for scripts and other tools."""
from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Callable, Sequence
from uuid import UUID


def print_rows(fmt: str, columns: Sequence[str], rows: Sequence[tuple], table: Callable[[], None]) -> None:
    """Rows in the format a command was asked for: json, csv, or its own table (`table()`)."""
    if fmt == "json":
        print_json(columns, rows)
    elif fmt == "csv":
        print_csv(columns, rows)
    else:
        table()


def print_json(columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """One JSON array of row objects; timestamps as ISO 8601 in UTC."""
    json.dump([dict(zip(columns, row)) for row in rows], sys.stdout, default=_plain, ensure_ascii=False)
    sys.stdout.write("\n")


def print_csv(columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """A header line, then one CSV line per row (lists and structs as JSON text)."""
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v if isinstance(v, (str, int, float)) else _text(v) for v in row])


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value).isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (UUID, bytes)):
        return value.hex() if isinstance(value, bytes) else str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _text(value: Any) -> str:
    if isinstance(value, (datetime, date, time)):
        return _plain(value)
    return json.dumps(value, default=_plain, ensure_ascii=False)
