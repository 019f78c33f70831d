"""`newsmon alerts test "QUERY"`: what a rule would match among stored articles, before saving it."""
from __future__ import annotations

import sys

from alerts.match import match_article
from alerts.query import QueryError, Rule, compile_rules, parse
from storage.articles import originals
from storage.db import open_reader

from flows.config import Settings


def try_query(settings: Settings, query: str, limit: int) -> int:
    """Print up to `limit` matching stored originals with their snippets; exit 2 on a bad query."""
    try:
        node = parse(query)
    except QueryError as exc:
        print(f"query: {exc}", file=sys.stderr)
        return 2
    matcher = compile_rules([Rule(name="test", query=query, node=node)])
    con = open_reader(settings.database, settings.storage.memory_limit, settings.storage.shared)
    shown = scanned = 0
    try:
        for article_id, article in originals(con):
            scanned += 1
            for hit in match_article(matcher, article_id, article):
                shown += 1
                print(f"{shown}. {hit.title or '(no title)'}\n   {hit.url}\n   terms: {', '.join(hit.matched_terms)}"
                      f"\n   {hit.snippet}\n")
            if shown >= limit:
                break
    finally:
        con.close()
    print(f"{shown} match(es) among {scanned} stored original article(s)")
    return 0
