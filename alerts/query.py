"""The alert rule language: normaliser, parser to a frozen AST, one compiled matcher for all rules; pure.

Grammar (operators are upper case; adjacent terms are joined by an implicit AND):

    query   := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*
    unary   := "NOT" unary | near
    near    := primary ["NEAR/" n primary]        (both sides a term or a phrase)
    primary := ["title:" | "text:"] (word | "phrase" | "(" or_expr ")")
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import chain
from typing import Sequence, Union

TITLE = "title"
TEXT = "text"
FIELDS = (TITLE, TEXT)
MIN_PREFIX = 2  # a one-letter prefix would make a rule a candidate for nearly every article
_STEM = 4  # prefixes are indexed by at most this many leading letters
# Groups, NOTs and field scopes nest at most this deep: far beyond any real rule, and well inside
# Python's recursion limit, which the parser, the compiler and the matcher all walk the tree with.
MAX_DEPTH = 32
# NEAR/n beyond this many words spans any article (use AND); the search index keeps the distance as a
# 32-bit phrase slop, and int() of a very long digit string raises ValueError, not QueryError.
MAX_NEAR = 1000


class QueryError(ValueError):
    """A rule that does not parse; str() is "<message> at column N" (1-based)."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column


# ---------------------------------------------------------------------------------------------------------------
# Normaliser: the same for rules and articles, so whatever folding one side gets, the other gets too.

# Letters that have no Unicode decomposition, so NFKD alone would keep them distinct from their ASCII spelling;
# U+02BC is an apostrophe that Unicode classes as a letter.
_NO_DECOMPOSITION = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "đ": "d", "ð": "d", "ł": "l", "þ": "th",
                                   "ı": "i", "ħ": "h", "ŧ": "t", "\u02bc": " "})
_ALNUM = re.compile(r"[^\W_]+")
# Runs of letters/digits in the original text; combining marks are kept so "e\u0301te" stays one word.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_MARK = re.compile(f"[{_MARKS}]")
_WORD_RUN = re.compile(f"(?:[^\\W_]|[{_MARKS}])+")


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@functools.lru_cache(maxsize=262_144)
def fold_word(word: str) -> tuple[str, ...]:
    """One run of letters/digits -> its normalised tokens (usually one; "ǆ" or "½" may give more)."""
    if word.isascii():
        return (word.lower(),)
    folded = _strip_marks(word).casefold()
    if not folded.isascii():  # casefold can produce new combining marks ("İ" -> "i" + dot above)
        folded = _strip_marks(folded)
    return tuple(_ALNUM.findall(folded.translate(_NO_DECOMPOSITION)))


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """(normalised token, start, end) for every word of `text`; offsets index the original string."""
    # Without combining marks in the text, the simpler pattern finds the same runs, twice as fast.
    pattern = _WORD_RUN if _MARK.search(text) else _ALNUM
    out = []
    for match in pattern.finditer(text):
        tokens = fold_word(match.group())
        if len(tokens) == 1:
            out.append((tokens[0], match.start(), match.end()))
        else:
            out.extend((token, match.start(), match.end()) for token in tokens)
    return out


def token_offsets(text: str) -> list[tuple[int, int]]:
    """(start, end) in `text` of each token of normalise_tokens(text), in the same order."""
    pattern = _WORD_RUN if _MARK.search(text) else _ALNUM
    folded = list(map(fold_word, pattern.findall(text)))
    if all(folded) and sum(map(len, folded)) == len(folded):  # one token per run: the usual, fast case
        return [match.span() for match in pattern.finditer(text)]
    return [(start, end) for _, start, end in token_spans(text)]


def normalise_tokens(text: str) -> list[str]:
    """Text -> normalised words: NFKD, marks stripped, casefolded, ligatures expanded, split on non-alphanumerics."""
    # The same words as token_spans without offsets, since this runs on every article; most whitespace-separated
    # chunks are a plain word, which skips the (slower) regex.
    runs = [run for chunk in text.split() for run in ((chunk,) if chunk.isalnum() else _WORD_RUN.findall(chunk))]
    return list(chain.from_iterable(map(fold_word, runs)))


# ---------------------------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Term:
    """A word or phrase: consecutive normalised words; `prefix` makes the last one a prefix; field None = both."""

    words: tuple[str, ...]
    prefix: bool = False
    field: str | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        """The article fields this term may match in."""
        return FIELDS if self.field is None else (self.field,)


@dataclass(frozen=True)
class And:
    """All children match."""

    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    """At least one child matches."""

    children: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    """The child does not match."""

    child: "Node"


@dataclass(frozen=True)
class Near:
    """Both terms occur in the same field with at most `distance` words between them, in either order."""

    left: Term
    right: Term
    distance: int


Node = Union[Term, And, Or, Not, Near]


# ---------------------------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # 'WORD' | 'PHRASE' | 'FIELD' | 'AND' | 'OR' | 'NOT' | 'NEAR' | '(' | ')' | 'END'
    col: int
    text: str = ""
    value: object = None


_LEXEME = re.compile(r'\s+|[()"]|[^\s()"]+')
_FIELD = re.compile(r"([A-Za-z]+):")
_OPERATORS = ("AND", "OR", "NOT")


def _term(raw: str, col: int, what: str) -> Term:
    """A word or phrase body -> Term; '*' is only allowed as the last character."""
    star = raw.find("*")
    if 0 <= star < len(raw.rstrip()) - 1:
        raise QueryError("'*' is only allowed at the end of a word", col + star)
    body = raw.rstrip().rstrip("*")
    prefix = len(body) < len(raw.rstrip())
    words = tuple(normalise_tokens(body))
    if not words:
        raise QueryError(f"{what} has no letters or digits", col)
    if prefix and len(words[-1]) < MIN_PREFIX:
        raise QueryError(f"a prefix needs at least {MIN_PREFIX} letters before '*'", col)
    return Term(words, prefix)


def _near(raw: str, col: int) -> _Tok:
    digits = raw[5:]
    if not raw.startswith("NEAR/") or not digits.isdigit() or not digits.isascii():
        raise QueryError("NEAR needs a distance, e.g. NEAR/10", col if raw == "NEAR" else col + 5)
    if len(digits.lstrip("0")) > len(str(MAX_NEAR)) or int(digits) > MAX_NEAR:
        raise QueryError(f"NEAR allows at most {MAX_NEAR} words between its terms (use AND for any distance)",
                         col + 5)
    return _Tok("NEAR", col, raw, int(digits))


def _word(raw: str, col: int) -> list[_Tok]:
    """A bare word: an operator, NEAR/n, a field scope (maybe glued to its term), or a term."""
    if raw in _OPERATORS:
        return [_Tok(raw, col, raw)]
    if raw == "NEAR" or raw.startswith("NEAR/"):
        return [_near(raw, col)]
    scope = _FIELD.match(raw)
    if not scope:
        return [_Tok("WORD", col, raw, _term(raw, col, "term"))]
    name = scope.group(1).lower()
    if name not in FIELDS:
        raise QueryError(f"unknown field '{scope.group(1)}:' (use title: or text:, or quote the word)", col)
    rest = raw[scope.end():]
    field = _Tok("FIELD", col, raw[:scope.end()], name)
    return [field, _Tok("WORD", col + scope.end(), rest, _term(rest, col + scope.end(), "term"))] if rest else [field]


def _phrase(query: str, pos: int) -> tuple[_Tok, int]:
    close = query.find('"', pos + 1)
    if close < 0:
        raise QueryError("unterminated quote", pos + 1)
    body = query[pos + 1:close]
    if not body.strip():
        raise QueryError("empty phrase", pos + 1)
    return _Tok("PHRASE", pos + 1, query[pos:close + 1], _term(body, pos + 2, "phrase")), close + 1


def _lex(query: str) -> list[_Tok]:
    """Query string -> tokens, each with its 1-based column."""
    toks: list[_Tok] = []
    pos = 0
    while pos < len(query):
        if query[pos] == '"':
            tok, pos = _phrase(query, pos)
            toks.append(tok)
            continue
        lexeme = _LEXEME.match(query, pos).group()
        if lexeme in "()":
            toks.append(_Tok(lexeme, pos + 1, lexeme))
        elif not lexeme.isspace():
            toks.extend(_word(lexeme, pos + 1))
        pos += len(lexeme)
    toks.append(_Tok("END", len(query) + 1))
    return toks


# ---------------------------------------------------------------------------------------------------------------
# Parser (recursive descent, one method per grammar rule)

_STARTS_OPERAND = ("WORD", "PHRASE", "FIELD", "(", "NOT")


class _Parser:
    def __init__(self, query: str) -> None:
        self.toks = _lex(query)
        self.i = 0
        self.depth = 0

    def nest(self, tok: _Tok) -> None:
        """Enter one more level of nesting; refuse a rule nested deeper than MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"nested more than {MAX_DEPTH} levels deep (parentheses, NOT, field scopes)", tok.col)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        self.i += 1
        return self.toks[self.i - 1]

    def operand_follows(self, op: _Tok) -> None:
        if self.peek().kind not in _STARTS_OPERAND:
            raise QueryError(f"{op.text} needs a term after it", op.col)

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.peek().kind == "OR":
            self.operand_follows(self.take())
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children = [self.unary()]
        while self.peek().kind in ("AND",) + _STARTS_OPERAND:
            if self.peek().kind == "AND":
                self.operand_follows(self.take())
            children.append(self.unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self) -> Node:
        if self.peek().kind == "NOT":
            op = self.take()
            self.operand_follows(op)
            self.nest(op)
            child = self.unary()
            self.depth -= 1
            return Not(child)
        return self.near()

    def near(self) -> Node:
        left = self.primary()
        if self.peek().kind != "NEAR":
            return left
        op = self.take()
        self.operand_follows(op)
        if self.peek().kind in ("NOT", "("):
            raise QueryError("NEAR needs a word or phrase on each side", op.col)
        right = self.primary()
        if not isinstance(left, Term) or not isinstance(right, Term):
            raise QueryError("NEAR needs a word or phrase on each side", op.col)
        if left.field and right.field and left.field != right.field:
            raise QueryError("both sides of NEAR must be in the same field", op.col)
        return Near(left, right, op.value)

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind in ("WORD", "PHRASE"):
            return tok.value
        if tok.kind == "FIELD":
            if self.peek().kind not in ("WORD", "PHRASE", "(", "FIELD"):
                raise QueryError(f"{tok.text} needs a word, phrase or parenthesised group after it", tok.col)
            self.nest(tok)
            node = _scoped(self.primary(), tok.value, tok.col)
            self.depth -= 1
            return node
        if tok.kind == "(":
            return self.group(tok)
        raise _misplaced(tok)

    def group(self, opening: _Tok) -> Node:
        if self.peek().kind == ")":
            raise QueryError("empty parentheses", opening.col)
        self.nest(opening)
        node = self.or_expr()
        if self.take().kind != ")":
            raise QueryError("unbalanced parenthesis", opening.col)
        self.depth -= 1
        return node


def _misplaced(tok: _Tok) -> QueryError:
    """The error for a token found where a term should start."""
    if tok.kind == ")":
        return QueryError("unbalanced parenthesis", tok.col)
    if tok.kind == "END":
        return QueryError("the query ends where a term is expected", tok.col)
    if tok.kind == "NEAR":
        return QueryError("NEAR needs a word or phrase on each side", tok.col)
    return QueryError(f"{tok.text} needs a term before it", tok.col)


def _scoped(node: Node, field: str, col: int) -> Node:
    """Push a field scope down to every term of `node`."""
    match node:
        case Term():
            if node.field not in (None, field):
                raise QueryError(f"conflicting field scopes {node.field}: and {field}:", col)
            return Term(node.words, node.prefix, field)
        case And() | Or():
            return type(node)(tuple(_scoped(child, field, col) for child in node.children))
        case Not():
            return Not(_scoped(node.child, field, col))
        case Near():
            return Near(_scoped(node.left, field, col), _scoped(node.right, field, col), node.distance)
    raise TypeError(f"not a query node: {node!r}")


def parse(query: str) -> Node:
    """Rule text -> AST; raises QueryError with the 1-based column of the offending character."""
    parser = _Parser(query)
    if parser.peek().kind == "END":
        raise QueryError("empty query", 1)
    node = parser.or_expr()
    tok = parser.peek()
    if tok.kind != "END":
        raise _misplaced(tok)
    if triggers(node) is None:
        first_not = next(t.col for t in parser.toks if t.kind == "NOT")
        raise QueryError("nothing positive to match: NOT needs a term to match beside it (a AND NOT b)", first_not)
    return node


# ---------------------------------------------------------------------------------------------------------------
# Compilation: each rule is indexed under a few words, at least one of which must occur for it to match.

TriggerKey = tuple[str, bool]  # (normalised word or prefix, is_prefix)


def _term_key(term: Term) -> TriggerKey:
    exact = term.words[:-1] if term.prefix else term.words
    if exact:
        return max(exact, key=len), False  # in a phrase, the longest word is usually the rarest
    return term.words[-1], True


def _cost(keys: frozenset[TriggerKey]) -> float:
    # Short words and prefixes occur in more articles, so they make worse index keys.
    return sum((2.0 if is_prefix else 1.0) / len(word) for word, is_prefix in keys)


def triggers(node: Node) -> frozenset[TriggerKey] | None:
    """Index keys such that any article matching `node` contains one of them; None if there are none (pure NOT)."""
    match node:
        case Term():
            return frozenset([_term_key(node)])
        case Near():
            return min(triggers(node.left), triggers(node.right), key=_cost)
        case Not():
            return None
        case And():
            options = [keys for keys in map(triggers, node.children) if keys is not None]
            return min(options, key=_cost) if options else None
        case Or():
            options = [triggers(child) for child in node.children]
            return None if None in options else frozenset().union(*options)
    raise TypeError(f"not a query node: {node!r}")


def positive_terms(node: Node) -> tuple[Term, ...]:
    """Every term of `node` that is not under a NOT, in query order, without repeats."""
    match node:
        case Term():
            return (node,)
        case Near():
            found = (node.left, node.right)
        case Not():
            return ()
        case And() | Or():
            found = tuple(term for child in node.children for term in positive_terms(child))
        case _:
            raise TypeError(f"not a query node: {node!r}")
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Rule:
    """A named alert rule with its parsed query and scope (feeds: URLs or "tag:NAME"; empty = any)."""

    name: str
    query: str
    node: Node
    feeds: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    min_words: int = 0

    @classmethod
    def from_query(cls, name: str, query: str, **scope) -> "Rule":
        """Parse `query` and build the rule (scope keywords as in the constructor)."""
        return cls(name, query, parse(query), **scope)


def language_code(language: str | None) -> str:
    """'fr-FR' / 'FR' / 'fr_fr' -> 'fr' (primary subtag, lower case); '' when unknown."""
    return re.split(r"[-_]", (language or "").strip().lower(), maxsplit=1)[0]


@dataclass(frozen=True)
class CompiledRule:
    """A rule with what the matcher needs precomputed."""

    rule: Rule
    terms: tuple[Term, ...]
    feed_urls: frozenset[str]
    feed_tags: frozenset[str]
    languages: frozenset[str]


def _compile(rule: Rule) -> CompiledRule:
    tags = frozenset(f[4:].casefold() for f in rule.feeds if f.startswith("tag:"))
    urls = frozenset(f for f in rule.feeds if not f.startswith("tag:"))
    languages = frozenset(language_code(x) for x in rule.languages) - {""}
    return CompiledRule(rule, positive_terms(rule.node), urls, tags, languages)


class Matcher:
    """All rules compiled together: an inverted index from normalised words and prefixes to rule numbers."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        exact: dict[str, list[int]] = defaultdict(list)
        stems: dict[str, list[int]] = defaultdict(list)
        for number, rule in enumerate(rules):
            keys = triggers(rule.node)
            if keys is None:
                raise ValueError(f"rule {rule.name!r} has nothing positive to match")
            for word, is_prefix in keys:
                # Prefixes are indexed by their first few letters only, so that each article word needs at most
                # STEM - MIN_PREFIX + 1 lookups; evaluating the rule checks the whole prefix.
                (stems[word[:_STEM]] if is_prefix else exact[word]).append(number)
        self.rules = tuple(_compile(rule) for rule in rules)
        self._exact = {word: tuple(numbers) for word, numbers in exact.items()}
        self._stems = {stem: tuple(numbers) for stem, numbers in stems.items()}
        self._exact_keys = frozenset(self._exact)
        self._stem_keys = frozenset(self._stems)
        self._stem_lengths = tuple(sorted({len(stem) for stem in stems}))

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, vocabulary: set[str] | frozenset[str]) -> list[int]:
        """Numbers (in rule order) of the rules that may match a text with these distinct normalised words."""
        found: set[int] = set()
        for word in vocabulary & self._exact_keys:
            found.update(self._exact[word])
        if self._stem_lengths:
            stems = {word[:length] for word in vocabulary for length in self._stem_lengths}
            for stem in stems & self._stem_keys:
                found.update(self._stems[stem])
        return sorted(found)


def compile_rules(rules: Sequence[Rule]) -> Matcher:
    """Build one matcher for all rules; rule names must be unique (ValueError otherwise)."""
    duplicates = sorted(name for name, count in Counter(rule.name for rule in rules).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate rule names: {', '.join(duplicates)}")
    return Matcher(rules)
