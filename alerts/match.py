"""Article + compiled rules -> AlertHit with matched terms and a highlighted snippet; pure.

Each article is tokenised once; the matcher's inverted index names the few rules that could match it,
and only those are evaluated, against per-field word positions shared by all rules.
"""
from __future__ import annotations

import html
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable

from ingest.models import AlertHit, Article

from .query import (FIELDS, TEXT, TITLE, And, CompiledRule, Matcher, Near, Node, Not, Or, Term, language_code,
                    normalise_tokens, token_offsets)

SNIPPET_CHARS = 300  # upper bound on the visible length of a snippet (without the ** / <mark> markers)
_SEPARATOR = " … "  # between sentences that are not next to each other in the article
_ELLIPSIS = "…"
_MIN_EXTRA = 60  # a shorter fragment of a further sentence says too little to be worth adding
_SPACES = re.compile(r"\s+")
# A sentence ends at . ! ? … (plus closing quotes/brackets) followed by space, or at a line break.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*\s+|\s*\n\s*")

Occurrence = tuple[str, int, int, int]  # (field, start char, end char, index of the term)


class _Field:
    """One article field tokenised once; positions and character spans are built only when a rule needs them."""

    __slots__ = ("text", "words", "_positions", "_spans", "_vocab")

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = normalise_tokens(text)
        self._positions: dict[str, list[int]] | None = None
        self._spans: list[tuple[int, int]] | None = None
        self._vocab: list[str] | None = None

    @property
    def positions(self) -> dict[str, list[int]]:
        """Word -> its positions, in order."""
        if self._positions is None:
            self._positions = {}
            for position, word in enumerate(self.words):
                self._positions.setdefault(word, []).append(position)
        return self._positions

    @property
    def spans(self) -> list[tuple[int, int]]:
        """(start, end) in `text` of each word, for matched terms and snippets."""
        if self._spans is None:
            self._spans = token_offsets(self.text)
        return self._spans

    @property
    def vocab(self) -> list[str]:
        """Distinct words, sorted, for prefix lookups."""
        if self._vocab is None:
            self._vocab = sorted(self.positions)
        return self._vocab


class _Doc:
    """An article indexed for matching; term positions are cached because many rules share terms."""

    def __init__(self, article: Article) -> None:
        self.article = article
        self.fields = {TITLE: _Field(article.title or ""), TEXT: _Field(article.text or "")}
        self._starts: dict[tuple, list[int]] = {}
        self._sentences: list[_Piece] | None = None

    def vocabulary(self) -> set[str]:
        return set(self.fields[TITLE].words).union(self.fields[TEXT].words)

    def word_count(self) -> int:
        return self.article.word_count or len(self.fields[TEXT].words)

    def starts(self, term: Term, field: str) -> list[int]:
        """Sorted word positions where `term` starts in `field`."""
        key = (term.words, term.prefix, field)
        if key not in self._starts:
            self._starts[key] = _term_starts(self.fields[field], term)
        return self._starts[key]

    def sentences(self) -> list[_Piece]:
        if self._sentences is None:
            self._sentences = _sentences(self.fields[TITLE].text, self.fields[TEXT].text)
        return self._sentences


# ---------------------------------------------------------------------------------------------------------------
# Term positions and rule evaluation


def _prefix_positions(field: _Field, prefix: str) -> list[int]:
    vocab, found = field.vocab, []
    i = bisect_left(vocab, prefix)
    while i < len(vocab) and vocab[i].startswith(prefix):
        found.extend(field.positions[vocab[i]])
        i += 1
    return sorted(found)


def _phrase_at(words: list[str], start: int, term: Term) -> bool:
    last = len(term.words) - 1
    if start < 0 or start + last >= len(words):
        return False
    return all(words[start + i] == want or (term.prefix and i == last and words[start + i].startswith(want))
               for i, want in enumerate(term.words))


def _term_starts(field: _Field, term: Term) -> list[int]:
    exact = range(len(term.words) - 1) if term.prefix else range(len(term.words))
    if not exact:
        return _prefix_positions(field, term.words[0])
    # Check the phrase only where its rarest exact word occurs.
    anchor = min(exact, key=lambda i: len(field.positions.get(term.words[i], ())))
    found = field.positions.get(term.words[anchor], ())
    return [p - anchor for p in found if _phrase_at(field.words, p - anchor, term)]


def _any_between(sorted_values: list[int], low: int, high: int) -> bool:
    i = bisect_left(sorted_values, low)
    return i < len(sorted_values) and sorted_values[i] <= high


def _near_in(doc: _Doc, node: Near, field: str) -> bool:
    right = doc.starts(node.right, field)
    if not right:
        return False
    gap, left_len, right_len = node.distance, len(node.left.words), len(node.right.words)
    for start in doc.starts(node.left, field):
        end = start + left_len - 1
        # right after left (starts 1..gap+1 words after its end), or right before left (ends just as far before)
        after = _any_between(right, end + 1, end + 1 + gap)
        if after or _any_between(right, start - gap - right_len, start - right_len):
            return True
    return False


def _holds(node: Node, doc: _Doc) -> bool:
    """Whether the article satisfies `node`."""
    match node:
        case Term():
            return any(doc.starts(node, field) for field in node.fields)
        case And():
            return all(_holds(child, doc) for child in node.children)
        case Or():
            return any(_holds(child, doc) for child in node.children)
        case Not():
            return not _holds(node.child, doc)
        case Near():
            return any(_near_in(doc, node, field) for field in node.left.fields if field in node.right.fields)
    raise TypeError(f"not a query node: {node!r}")


def _in_scope(rule: CompiledRule, article: Article, tags: frozenset[str], doc: _Doc) -> bool:
    """Feed, language and length restrictions of the rule (an article of unknown language passes)."""
    if (rule.feed_urls or rule.feed_tags) and article.feed_url not in rule.feed_urls and not rule.feed_tags & tags:
        return False
    language = language_code(article.language)
    if rule.languages and language and language not in rule.languages:
        return False
    return doc.word_count() >= rule.rule.min_words


def match_article(matcher: Matcher, article_id: int, article: Article,
                  feed_tags: frozenset[str] = frozenset()) -> list[AlertHit]:
    """One AlertHit per rule (in rule order) that the article matches; feed_tags are the tags of its feed."""
    doc = _Doc(article)
    tags = frozenset(tag.casefold() for tag in feed_tags)
    hits = []
    for number in matcher.candidates(doc.vocabulary()):
        rule = matcher.rules[number]
        if _in_scope(rule, article, tags, doc) and _holds(rule.rule.node, doc):
            hits.append(_hit(rule, article_id, doc))
    return hits


def _hit(rule: CompiledRule, article_id: int, doc: _Doc) -> AlertHit:
    article = doc.article
    plain, marked = _snippet(doc, rule.terms)
    return AlertHit(alert=rule.rule.name, article_id=article_id, url=article.url, title=article.title,
                    feed_url=article.feed_url, published_at=article.published_at,
                    matched_terms=_surface_terms(doc, _occurrences(doc, rule.terms, scoped=True)),
                    snippet=plain, snippet_html=marked)


def _occurrences(doc: _Doc, terms: Iterable[Term], scoped: bool) -> list[Occurrence]:
    """Where each term occurs, in document order (title first); `scoped` keeps only its own fields."""
    found = []
    for index, term in enumerate(terms):
        for field in term.fields if scoped else FIELDS:
            starts, last = doc.starts(term, field), len(term.words) - 1
            spans = doc.fields[field].spans if starts else []  # offsets cost a pass over the text: only if needed
            found.extend((field, spans[s][0], spans[s + last][1], index) for s in starts)
    return sorted(found, key=lambda o: (FIELDS.index(o[0]), o[1], o[2]))


def _surface_terms(doc: _Doc, occurrences: list[Occurrence]) -> tuple[str, ...]:
    """The matched words as first written in the article, one per normalised form; a match inside a longer
    one ("Unis" inside "États-Unis") is not reported separately."""
    seen: dict[str, str] = {}
    covered_to: dict[str, int] = {}
    for field, start, end, _ in sorted(occurrences, key=lambda o: (FIELDS.index(o[0]), o[1], -o[2])):
        if end <= covered_to.get(field, -1):
            continue
        covered_to[field] = end
        surface = _SPACES.sub(" ", doc.fields[field].text[start:end])
        seen.setdefault(" ".join(normalise_tokens(surface)), surface)
    return tuple(seen.values())

# ---------------------------------------------------------------------------------------------------------------
# Snippets


@dataclass(frozen=True)
class _Piece:
    """A sentence of the text, or the title, as a character range."""

    field: str
    start: int
    end: int
    order: int  # 0 for the title, then the text's sentences in order

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class _View:
    """What a sentence would show in the snippet: a character range and the term occurrences in it."""

    piece: _Piece
    start: int
    end: int
    inside: list[Occurrence]  # every occurrence in the sentence
    shown: list[Occurrence]  # those within start..end

    def __len__(self) -> int:
        """Visible length, ellipses included."""
        cut = (self.start > self.piece.start) + (self.end < self.piece.end)
        return self.end - self.start + cut * len(_ELLIPSIS)


def _stripped(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_initial(text: str, end: int) -> bool:
    """A period right after a lone capital ("Kenneth F. McKenzie") does not end the sentence."""
    return text[end] == "." and end >= 1 and text[end - 1].isupper() and (end == 1 or not text[end - 2].isalnum())


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for boundary in _SENTENCE_END.finditer(text):
        if _is_initial(text, boundary.start()):
            continue
        spans.append(_stripped(text, start, boundary.end()))
        start = boundary.end()
    spans.append(_stripped(text, start, len(text)))
    return [(s, e) for s, e in spans if e > s]


def _sentences(title: str, text: str) -> list[_Piece]:
    pieces = [_Piece(TITLE, *_stripped(title, 0, len(title)), 0)] if title.strip() else []
    return pieces + [_Piece(TEXT, s, e, k) for k, (s, e) in enumerate(_sentence_spans(text), start=1)]


def _by_sentence(pieces: list[_Piece], occurrences: list[Occurrence]) -> dict[int, list[Occurrence]]:
    """Piece number -> the occurrences inside it (a phrase straddling two sentences belongs to neither)."""
    starts = {field: [(p.start, i) for i, p in enumerate(pieces) if p.field == field] for field in FIELDS}
    grouped: dict[int, list[Occurrence]] = {}
    for occurrence in occurrences:
        field, start, end, _ = occurrence
        k = bisect_right(starts[field], (start, len(pieces))) - 1
        if k >= 0 and end <= pieces[starts[field][k][1]].end:
            grouped.setdefault(starts[field][k][1], []).append(occurrence)
    return grouped


def _covers(view: _View) -> set[int]:
    return {o[3] for o in view.shown}


def _best(views: list[_View]) -> _View:
    """Most distinct terms shown; on ties a text sentence before the title, then the earliest."""
    return max(views, key=lambda v: (len(_covers(v)), v.piece.field == TEXT))  # max keeps the first of equals


def _extra(doc: _Doc, views: list[_View], covered: set[int], room: int) -> _View | None:
    """The sentence (trimmed to `room` if need be) showing most terms not yet shown, or None."""
    if room < _MIN_EXTRA:
        return None
    hopeful = [v for v in views if {o[3] for o in v.inside} - covered]
    fitted = [_view(doc, v.piece, v.inside, room) for v in hopeful]
    gains = [(len(_covers(v) - covered), -v.piece.order) for v in fitted]
    if not gains or max(gains)[0] == 0:
        return None
    return fitted[gains.index(max(gains))]


def _choose(doc: _Doc, views: list[_View]) -> list[_View]:
    """The best sentence, plus others that show terms not yet shown while the total fits; in document order."""
    chosen = [_best(views)]
    covered, room = _covers(chosen[0]), SNIPPET_CHARS - len(chosen[0])
    while (extra := _extra(doc, views, covered, room - len(_SEPARATOR))) is not None:
        chosen.append(extra)
        covered |= _covers(extra)
        room -= len(extra) + len(_SEPARATOR)
        views = [v for v in views if v.piece != extra.piece]
    return sorted(chosen, key=lambda v: v.piece.order)


def _word_bounds(text: str, piece: _Piece, start: int, end: int) -> tuple[int, int]:
    """Move a cut that falls inside a word to the nearest word boundary inside the range."""
    if start > piece.start and not text[start - 1].isspace():
        space = text.find(" ", start, end)
        start = space + 1 if space >= 0 else start
    if end < piece.end and not text[end].isspace():
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    return _stripped(text, start, end)


def _window(text: str, piece: _Piece, inside: list[Occurrence], limit: int) -> tuple[int, int]:
    """The range of at most `limit` characters of a sentence that shows the most distinct terms."""
    if len(piece) <= limit:
        return piece.start, piece.end
    width = limit - 2 * len(_ELLIPSIS)
    best = (-1, piece.start, piece.end)
    for focus in [piece.start] + [o[1] for o in inside]:
        # a little context before the first term shown; never run past the end of the sentence
        start = max(piece.start, min(focus - limit // 4, piece.end - width))
        start, end = _word_bounds(text, piece, start, start + width)
        shown = len({o[3] for o in inside if start <= o[1] and o[2] <= end})
        best = max(best, (shown, -start, end))
    return -best[1], best[2]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping highlights ("États-Unis" and "Unis") become one."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _highlight(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> tuple[str, str]:
    plain, marked, position = [], [], start
    for s, e in _merged([(s, e) for s, e in spans if start <= s and e <= end]):
        gap, word = _SPACES.sub(" ", text[position:s]), _SPACES.sub(" ", text[s:e])
        plain += [gap, f"**{word}**"]
        marked += [html.escape(gap), f"<mark>{html.escape(word)}</mark>"]
        position = e
    rest = _SPACES.sub(" ", text[position:end])
    return "".join(plain) + rest, "".join(marked) + html.escape(rest)


def _view(doc: _Doc, piece: _Piece, inside: list[Occurrence], limit: int = SNIPPET_CHARS) -> _View:
    start, end = _window(doc.fields[piece.field].text, piece, inside, limit)
    return _View(piece, start, end, inside, [o for o in inside if start <= o[1] and o[2] <= end])


def _render(doc: _Doc, view: _View) -> tuple[str, str]:
    piece = view.piece
    plain, marked = _highlight(doc.fields[piece.field].text, view.start, view.end, [(o[1], o[2]) for o in view.shown])
    lead = _ELLIPSIS if view.start > piece.start else ""
    tail = _ELLIPSIS if view.end < piece.end else ""
    return lead + plain + tail, html.escape(lead) + marked + html.escape(tail)


def _snippet(doc: _Doc, terms: Iterable[Term]) -> tuple[str, str]:
    pieces = doc.sentences()
    if not pieces:
        return "", ""
    grouped = _by_sentence(pieces, _occurrences(doc, terms, scoped=False))
    # Sentences without a term are never chosen, except the opening one when no term shows at all.
    fallback = next((p for p in pieces if p.field == TEXT), pieces[0])
    views = [_view(doc, pieces[i], grouped[i]) for i in sorted(grouped)] or [_view(doc, fallback, [])]
    plain, marked, previous = [], [], None
    for view in _choose(doc, views):
        if previous is not None:
            adjacent = view.piece.field == TEXT and view.piece.order == previous.piece.order + 1
            # an ellipsis already on either side marks the gap
            cut = view.start > view.piece.start or previous.end < previous.piece.end
            plain.append(" " if adjacent or cut else _SEPARATOR)
            marked.append(plain[-1])
        p, m = _render(doc, view)
        plain.append(p)
        marked.append(m)
        previous = view
    return "".join(plain), "".join(marked)


def _as_term(term: Term | str) -> Term | None:
    if isinstance(term, Term):
        return term
    words = tuple(normalise_tokens(term.rstrip().rstrip("*")))
    return Term(words, term.rstrip().endswith("*")) if words else None


def snippet(article: Article, terms: Iterable[Term | str]) -> tuple[str, str]:
    """(plain with **term**, HTML-escaped with <mark>term</mark>): best sentence(s), at most SNIPPET_CHARS long."""
    # terms: query Terms, or strings written like query words ("Daesh", "États-Unis", "syri*")
    leaves = [leaf for leaf in map(_as_term, terms) if leaf is not None]
    return _snippet(_Doc(article), leaves)
