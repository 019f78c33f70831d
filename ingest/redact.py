"""Redaction of secrets (the values of ${VAR} in the config) from any text newsmon writes; pure."""
from __future__ import annotations

import functools
import re
from typing import Iterable
from urllib.parse import quote

MASK = "***"


@functools.lru_cache(maxsize=64)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern | None:
    """One regex matching any secret (or its percent-encoded form) as a whole token."""
    forms = {form for s in secrets if s for form in (s, quote(s, safe=""))}
    if not forms:
        return None
    # Longest first, so a whole URL is replaced before a token inside it.
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    # Whole tokens only: secret "s" must not turn "Connection reset" into "re***et".
    return re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


def redact(text: str | None, secrets: Iterable[str | None]) -> str | None:
    """`text` with every secret that stands as a whole token replaced by '***'."""
    if not text:
        return text
    pattern = _pattern(tuple(sorted({s for s in secrets if s})))
    return text if pattern is None else pattern.sub(MASK, text)
