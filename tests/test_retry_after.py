"""Retry-After parsing (fetch stage and webhook delivery share it)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ingest.retry_after import retry_after_seconds

NOW = datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("value, expected", [("7", 7.0), (" 0 ", 0.0), (None, None), ("", None), ("soon", None),
                                             ("Wed, 01 May 2024 08:30:10 GMT", 10.0),
                                             ("Wed, 01 May 2024 08:00:00 GMT", 0.0),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_seconds(value, expected):
    assert retry_after_seconds(value, now=NOW) == expected
