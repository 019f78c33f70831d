"""The rule language: normaliser, parser (AST and errors with columns), compiled matcher index."""
from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path

import pytest

from alerts.query import (And, Near, Not, Or, QueryError, Rule, Term, compile_rules, normalise_tokens, parse,
                          token_offsets, token_spans)


@pytest.mark.parametrize("text, tokens", [
    ("États-Unis d’Amérique", ["etats", "unis", "d", "amerique"]),
    ("l'Euphrate", ["l", "euphrate"]),
    ("l’Euphrate", ["l", "euphrate"]),
    ("lʼEuphrate", ["l", "euphrate"]),  # U+02BC, the modifier-letter apostrophe
    ("Deir ez-Zor", ["deir", "ez", "zor"]),
    ("Œuvre, cœur", ["oeuvre", "coeur"]),
    ("Encyclopædia", ["encyclopaedia"]),
    ("Straße", ["strasse"]),
    ("ﬁnance", ["finance"]),  # U+FB01, the fi ligature
    ("e\u0301te\u0301", ["ete"]),  # already decomposed accents
    ("İstanbul", ["istanbul"]),
    ("Bahreïn", ["bahrein"]),
    ("Łódź", ["lodz"]),
    ("snake_case C++ 2024", ["snake", "case", "c", "2024"]),
    ("  ... « » – ", []),
])
def test_normalise_tokens(text, tokens):
    assert normalise_tokens(text) == tokens


def test_token_spans_point_into_the_original_text():
    text = "Les États-Unis d’Amérique, l’Euphrate."
    spans = token_spans(text)
    assert [text[s:e] for _, s, e in spans] == ["Les", "États", "Unis", "d", "Amérique", "l", "Euphrate"]
    assert [t for t, _, _ in spans] == normalise_tokens(text)


@pytest.mark.parametrize("text", [
    "Les États-Unis d’Amérique, l’Euphrate.",
    "½ litre, 3¼ km",  # one run, several tokens
    "x ʼ y lʼavion",  # a run that folds to no token at all
    "Pe\u0301trole et e\u0301te\u0301",  # combining marks inside words
    "",
])
def test_token_offsets_align_with_tokens(text):
    assert token_offsets(text) == [(s, e) for _, s, e in token_spans(text)]
    assert len(token_offsets(text)) == len(normalise_tokens(text))


@pytest.mark.parametrize("query, node", [
    ("Daesh", Term(("daesh",))),
    ("Daesh pétrole", And((Term(("daesh",)), Term(("petrole",))))),
    ("Daesh AND pétrole", And((Term(("daesh",)), Term(("petrole",))))),
    ("a OR b c", Or((Term(("a",)), And((Term(("b",)), Term(("c",))))))),
    ("(a OR b) c", And((Or((Term(("a",)), Term(("b",)))), Term(("c",))))),
    ("a NOT b", And((Term(("a",)), Not(Term(("b",)))))),
    ("a AND NOT (b OR c)", And((Term(("a",)), Not(Or((Term(("b",)), Term(("c",)))))))),
    ('"Deir ez-Zor"', Term(("deir", "ez", "zor"))),
    ("États-Unis", Term(("etats", "unis"))),
    ("l’Euphrate", Term(("l", "euphrate"))),
    ("syri*", Term(("syri",), prefix=True)),
    ('"etats uni*"', Term(("etats", "uni"), prefix=True)),
    ("title:Daesh", Term(("daesh",), field="title")),
    ("TITLE:Daesh", Term(("daesh",), field="title")),
    ('text:"Deir ez-Zor"', Term(("deir", "ez", "zor"), field="text")),
    ("title:(a OR ab*)", Or((Term(("a",), field="title"), Term(("ab",), prefix=True, field="title")))),
    ('Daesh NEAR/10 "pétrole brut"', Near(Term(("daesh",)), Term(("petrole", "brut")), 10)),
    ("a NEAR/0 b", Near(Term(("a",)), Term(("b",)), 0)),
    ("title:a NEAR/2 b", Near(Term(("a",), field="title"), Term(("b",)), 2)),
    ("and or not near", And(tuple(Term((w,)) for w in ("and", "or", "not", "near")))),
    ('"AND" x', And((Term(("and",)), Term(("x",))))),
])
def test_parse(query, node):
    assert parse(query) == node


@pytest.mark.parametrize("query, message, column", [
    ("", "empty query", 1),
    ("   ", "empty query", 1),
    ("Daesh AND (pétrole OR Syrie", "unbalanced parenthesis", 11),
    ("Daesh AND pétrole) OR Syrie", "unbalanced parenthesis", 18),
    ("(Daesh", "unbalanced parenthesis", 1),
    ("((a OR b) AND c", "unbalanced parenthesis", 1),
    ("Daesh AND", "AND needs a term after it", 7),
    ("Daesh OR", "OR needs a term after it", 7),
    ("AND Daesh", "AND needs a term before it", 1),
    ("Daesh OR OR Syrie", "OR needs a term after it", 7),
    ("Daesh AND )", "AND needs a term after it", 7),
    ('Daesh "Deir ez', "unterminated quote", 7),
    ('Daesh ""', "empty phrase", 7),
    ("Daesh NEAR/x pétrole", "NEAR needs a distance, e.g. NEAR/10", 12),
    ("Daesh NEAR/ pétrole", "NEAR needs a distance, e.g. NEAR/10", 12),
    ("Daesh NEAR pétrole", "NEAR needs a distance, e.g. NEAR/10", 7),
    ("Daesh NEAR/5", "NEAR/5 needs a term after it", 7),
    ("NEAR/5 Daesh", "NEAR needs a word or phrase on each side", 1),
    ("Daesh NEAR/5 (a OR b)", "NEAR needs a word or phrase on each side", 7),
    ("Daesh NEAR/5 NOT b", "NEAR needs a word or phrase on each side", 7),
    ("a NEAR/5 b NEAR/5 c", "NEAR needs a word or phrase on each side", 12),
    ("title:a NEAR/5 text:b", "both sides of NEAR must be in the same field", 9),
    ("NOT Daesh", "nothing positive to match", 1),
    ("NOT a AND NOT b", "nothing positive to match", 1),
    ("Syrie OR NOT Daesh", "nothing positive to match", 10),
    ("Daesh NOT", "NOT needs a term after it", 7),
    ("title:", "title: needs a word, phrase or parenthesised group after it", 1),
    ("x title: OR y", "title: needs a word, phrase or parenthesised group after it", 3),
    ("url:x", "unknown field 'url:'", 1),
    ("title:(text:a)", "conflicting field scopes", 1),
    ("sy*ria", "'*' is only allowed at the end of a word", 3),
    ("syri**", "'*' is only allowed at the end of a word", 5),
    ("a* b", "a prefix needs at least 2 letters", 1),
    ("Daesh ()", "empty parentheses", 7),
    ("Daesh -- ", "term has no letters or digits", 7),
    ("x )", "unbalanced parenthesis", 3),
])
def test_parse_errors_report_the_column(query, message, column):
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert caught.value.message.startswith(message)
    assert caught.value.column == column
    assert str(caught.value) == f"{caught.value.message} at column {column}"


def test_query_error_is_a_value_error():
    with pytest.raises(ValueError, match=r"^unbalanced parenthesis at column 1$"):
        parse("(a")


def test_rule_from_query_keeps_the_scope():
    rule = Rule.from_query("oil", "pétrole", feeds=("tag:energy",), languages=("fr",), min_words=50)
    assert rule == Rule("oil", "pétrole", Term(("petrole",)), ("tag:energy",), ("fr",), 50)


def test_compile_rules_rejects_duplicate_names():
    rules = [Rule.from_query("dup", "a"), Rule.from_query("dup", "b"), Rule.from_query("ok", "c")]
    with pytest.raises(ValueError, match="duplicate rule names: dup"):
        compile_rules(rules)


def test_compile_rules_rejects_a_hand_built_pure_negation():
    with pytest.raises(ValueError, match="nothing positive"):
        compile_rules([Rule("neg", "NOT a", Not(Term(("a",))))])


def test_candidates_come_from_the_index():
    matcher = compile_rules([
        Rule.from_query("oil", "Daesh AND pétrole"),
        Rule.from_query("syria", "syri*"),
        Rule.from_query("kurds", "Kurdes OR Turcs"),
        Rule.from_query("deir", '"Deir ez-Zor"'),
        Rule.from_query("anti", "Bahreïn NOT Daesh"),
    ])
    assert len(matcher) == 5
    assert matcher.candidates({"unrelated", "words"}) == []
    assert matcher.candidates({"syriennes"}) == [1]
    assert matcher.candidates({"sy"}) == []  # shorter than the prefix
    assert matcher.candidates({"turcs"}) == [2]
    assert matcher.candidates({"kurdes", "syrie"}) == [1, 2]
    assert matcher.candidates({"bahrein"}) == [4]
    # an AND rule is indexed under one of its words only, which keeps it out of most articles
    assert (0 in matcher.candidates({"daesh"})) != (0 in matcher.candidates({"petrole"}))
    everything = set(normalise_tokens("Daesh pétrole Syrie Kurdes Deir ez-Zor Bahreïn"))
    assert matcher.candidates(everything) == [0, 1, 2, 3, 4]


DOC = Path(__file__).parents[1] / "docs/ALERTS-RULES.md"


def _doc_table(header: str) -> list[list[str]]:
    """Rows of the markdown table in the rules documentation that starts with `header`."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in itertools.takewhile(lambda x: x.startswith("|"), lines[start:]):
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split(" | ")])
    return rows


@pytest.mark.parametrize("query, error", _doc_table("| Query | Error |"))
def test_documented_errors(query, error):
    with pytest.raises(QueryError) as caught:
        parse("" if query == "*(empty)*" else query)
    assert str(caught.value) == error


def test_documented_toml_examples_parse():
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    queries = [alert["query"] for block in blocks for alert in tomllib.loads(block).get("alerts", ())]
    assert len(queries) >= 2
    for query in queries:
        parse(query)
