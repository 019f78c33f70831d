"""Secrets out of every log record the process makes while a run holds them (newsmon's, Prefect's, httpx's)."""
from __future__ import annotations

import logging
import traceback
from contextlib import contextmanager
from typing import Iterator, Sequence

from ingest.redact import redact


@contextmanager
def redacted_logs(secrets: Sequence[str]) -> Iterator[None]:
    """Redact `secrets` from the message and traceback of every log record created inside the block.

    A record factory sees each record once, when it is made, before any handler (terminal, Prefect's
    API log table) formats or ships it."""
    if not secrets:
        yield
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg, record.args = redact(record.getMessage(), secrets), ()
        except Exception:  # noqa: BLE001 - a record whose arguments do not format is left to logging itself
            return record
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip(), secrets)
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)
