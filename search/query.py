"""The alert rule language (alerts/query.py) on the search index: AST -> tantivy query; pure.

Each term is analysed by the analyser of every language field it may match (so a French field
sees the French stem), and:
- a word is a term query, a phrase (or a hyphenated word) a phrase query, `word*` a prefix on the
  stem or on the folded word, `"a b*"` a phrase whose last word is a prefix;
- `a NEAR/n b` is a phrase query with slop n, in either order;
- `title:` / `text:` restrict the fields; a title match weighs TITLE_BOOST times a text match;
- AND, OR, NOT are Must, Should, MustNot clauses.
Plain words typed side by side (no operator, no quotes) are a ranked query: articles holding every
word come first, then those holding some of them (`relaxed`). Explicit operators, phrases, NEAR,
prefixes and fields filter strictly, as they do in alert rules.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import tantivy

from alerts.query import TEXT, TITLE, And, Near, Node, Not, Or, Term, language_code, positive_terms, token_spans

from .index import OTHER, SCHEMA, SLOTS, STEMMERS, analyzer, slot_of

TITLE_BOOST = 2.0
_QUOTED = re.compile(r'"[^"]*"')
_AND = re.compile(r"(?<![^\s(])AND(?![^\s)])")


@dataclass(frozen=True)
class Filters:
    """What narrows a search besides the query."""

    since: datetime | None = None
    until: datetime | None = None
    languages: tuple[str, ...] = ()  # primary subtags: 'fr', 'en'
    feed_urls: tuple[str, ...] | None = None  # None: any feed; () : none matched (a tag with no feed)


def slots_for(languages: Iterable[str]) -> tuple[str, ...]:
    """The language fields a search needs to look at (all of them when no language is given)."""
    codes = [language_code(x) for x in languages if language_code(x)]
    if not codes:
        return SLOTS
    return tuple(dict.fromkeys(c if c in STEMMERS else OTHER for c in codes))


@functools.lru_cache(maxsize=65_536)
def _analysed(slot: str, text: str) -> tuple[str, ...]:
    return tuple(analyzer(slot).analyze(text))


def _boosted(query: tantivy.Query, field: str) -> tantivy.Query:
    return tantivy.Query.boost_query(query, TITLE_BOOST) if field == TITLE else query


def _regex_prefix(field: str, prefixes: Iterable[str]) -> tantivy.Query:
    options = [tantivy.Query.regex_query(SCHEMA, field, re.escape(p) + ".*") for p in dict.fromkeys(prefixes) if p]
    return options[0] if len(options) == 1 else _any(options)


def _term_in(term: Term, slot: str, field: str) -> tantivy.Query | None:
    """One term in one field of one language, or None when the analyser leaves nothing of it."""
    name = f"{field}_{slot}"
    exact_words = term.words[:-1] if term.prefix else term.words
    tokens = list(_analysed(slot, " ".join(exact_words))) if exact_words else []
    if term.prefix:
        last = term.words[-1]
        stems = _analysed(slot, last)
        if not tokens:  # a stemmer may change a prefix's ending ("happy" -> "happi"): try both spellings
            return _regex_prefix(name, [stems[0] if stems else "", last])
        return tantivy.Query.phrase_prefix_query(SCHEMA, name, tokens + [stems[0] if stems else last])
    if not tokens:
        return None
    if len(tokens) == 1:
        return tantivy.Query.term_query(SCHEMA, name, tokens[0])
    return tantivy.Query.phrase_query(SCHEMA, name, tokens)


def _near_in(node: Near, slot: str, field: str) -> tantivy.Query | None:
    left = list(_analysed(slot, " ".join(node.left.words)))
    right = list(_analysed(slot, " ".join(node.right.words)))
    if not left or not right:
        return None
    name = f"{field}_{slot}"
    # tantivy's slop counts a swap of two words as 2, so each order gets its own phrase query.
    return _any([tantivy.Query.phrase_query(SCHEMA, name, left + right, slop=node.distance),
                 tantivy.Query.phrase_query(SCHEMA, name, right + left, slop=node.distance)])


def _any(queries: list[tantivy.Query]) -> tantivy.Query:
    if not queries:
        return tantivy.Query.empty_query()
    if len(queries) == 1:
        return queries[0]
    return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in queries])


def _fields(node: Term | Near) -> tuple[str, ...]:
    if isinstance(node, Near):
        return tuple(f for f in node.left.fields if f in node.right.fields)
    return node.fields


def compile_query(node: Node, slots: tuple[str, ...] = SLOTS) -> tantivy.Query:
    """The tantivy query for a parsed rule, over the given language fields."""
    match node:
        case Term() | Near():
            build = _near_in if isinstance(node, Near) else _term_in
            parts = [_boosted(q, field) for slot in slots for field in _fields(node)
                     if (q := build(node, slot, field)) is not None]
            return _any(parts)
        case And():
            clauses = [(tantivy.Occur.MustNot, compile_query(c.child, slots)) if isinstance(c, Not)
                       else (tantivy.Occur.Must, compile_query(c, slots)) for c in node.children]
            if all(occur == tantivy.Occur.MustNot for occur, _ in clauses):
                clauses.append((tantivy.Occur.Must, tantivy.Query.all_query()))
            return tantivy.Query.boolean_query(clauses)
        case Or():
            return _any([compile_query(c, slots) for c in node.children])
        case Not():
            return tantivy.Query.boolean_query([(tantivy.Occur.Must, tantivy.Query.all_query()),
                                                (tantivy.Occur.MustNot, compile_query(node.child, slots))])
    raise TypeError(f"not a query node: {node!r}")


def relaxed(node: Node, text: str, slots: tuple[str, ...] = SLOTS) -> tantivy.Query | None:
    """For plain words side by side: the query matching any of them (ranked by BM25); else None."""
    if not isinstance(node, And) or _AND.search(_QUOTED.sub(" ", text)):
        return None
    if not all(isinstance(c, Term) and c.field is None for c in node.children):
        return None
    return _any([compile_query(c, slots) for c in node.children])


def filtered(query: tantivy.Query, filters: Filters) -> tantivy.Query:
    """The query restricted by date, language and feed."""
    clauses = [(tantivy.Occur.Must, query)]
    if filters.since or filters.until:
        clauses.append((tantivy.Occur.Must, tantivy.Query.range_query(
            SCHEMA, "published", tantivy.FieldType.Date, _naive(filters.since), _naive(filters.until))))
    if filters.languages:
        clauses.append((tantivy.Occur.Must, tantivy.Query.term_set_query(SCHEMA, "lang", list(filters.languages))))
    if filters.feed_urls is not None:
        clauses.append((tantivy.Occur.Must, tantivy.Query.term_set_query(SCHEMA, "feed", list(filters.feed_urls))))
    return query if len(clauses) == 1 else tantivy.Query.boolean_query(clauses)


def _naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return (value.astimezone(timezone.utc) if value.tzinfo else value).replace(tzinfo=None)


def highlight_words(node: Node, text: str, language: str | None) -> list[str]:
    """The words of `text` (normalised) that the query's positive terms match after stemming, for snippets."""
    slot = slot_of(language)
    stems, prefixes = set(), set()
    for term in positive_terms(node):
        words = term.words[:-1] if term.prefix else term.words
        stems.update(_analysed(slot, " ".join(words)))
        if term.prefix:
            prefixes.update(p for p in (*_analysed(slot, term.words[-1])[:1], term.words[-1]) if p)
    starts = tuple(prefixes)  # str.startswith(()) is False
    found = []
    for word in dict.fromkeys(token for token, _, _ in token_spans(text)):
        if word.startswith(starts) or any(a in stems or a.startswith(starts) for a in _analysed(slot, word)):
            found.append(word)
    return found
