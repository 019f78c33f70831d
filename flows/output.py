"""Query results as JSON or CSV on stdout, for scripts and other tools."""
from __future__ import annotations

import csv
import json
import math
import sys
from datetime import date, datetime, time, timedelta, timezone
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
    """One JSON array of row objects; timestamps as ISO 8601 in UTC, NaN and infinities as null.

    Every value is made plain before anything is written, so a value JSON cannot hold never leaves
    half an array on stdout."""
    text = json.dumps([{c: plain(v) for c, v in zip(columns, row)} for row in rows],
                      ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")


def print_csv(columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """A header line, then one CSV line per row (lists and structs as JSON text)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")  # a Unix tool's lines, as DuckDB's own CSV writes them
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(v) for v in row])


def plain(value: Any) -> Any:
    """A query value as JSON can hold it: ISO 8601 for times and durations, hex for bytes, null for NaN."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return (value.astimezone(timezone.utc) if value.tzinfo else value).isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if isinstance(value, Decimal):
        return plain(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)  # UUID, and any type a future DuckDB hands back


def iso_duration(value: timedelta) -> str:
    """An ISO 8601 duration: timedelta(days=1, seconds=3723.5) -> 'P1DT1H2M3.5S'; negative ones start with '-'."""
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    secs = f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".") if value.microseconds else str(seconds)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n)
    if seconds or value.microseconds or not (value.days or clock):
        clock += f"{secs}S"
    return f"{sign}P{f'{value.days}D' if value.days else ''}{'T' + clock if clock else ''}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    plain_value = plain(value)
    return plain_value if isinstance(plain_value, str) else json.dumps(plain_value, ensure_ascii=False)
