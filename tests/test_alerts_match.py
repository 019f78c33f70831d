"""Matching articles against compiled rules: folding, NEAR, scopes, matched terms and snippets."""
from __future__ import annotations

import html
import itertools
from datetime import datetime, timezone
from pathlib import Path

import pytest

from alerts.match import SNIPPET_CHARS, match_article, snippet
from alerts.query import Rule, compile_rules
from ingest.models import Article

_LOCAL_SEED = Path(__file__).parent / "fixtures/seed_article.txt"
SEED_PATH = _LOCAL_SEED if _LOCAL_SEED.exists() else Path(__file__).parents[2] / "shared/fixtures/seed_article.txt"
SEED = SEED_PATH.read_text(encoding="utf-8")
SEED_TITLE = "Syrie : les troupes américaines restent près des puits de pétrole"
FEED = "https://example.org/feed.xml"


def article(text: str, title: str | None = None, *, language: str | None = "fr", feed_url: str = FEED,
            word_count: int = 0) -> Article:
    return Article(url="https://example.org/a/1", feed_url=feed_url, title=title, author=None,
                  published_at=datetime(2019, 11, 24, tzinfo=timezone.utc), date_source="page",
                  fetched_at=datetime(2019, 11, 25, tzinfo=timezone.utc), language=language, text=text,
                  content_hash="0" * 64, extraction="trafilatura", source_url="https://example.org/a/1",
                  word_count=word_count)


def hits(query: str, doc: Article, feed_tags: frozenset[str] = frozenset(), **scope):
    return match_article(compile_rules([Rule.from_query("rule", query, **scope)]), 7, doc, feed_tags)


def visible(plain: str) -> str:
    return plain.replace("**", "")


@pytest.mark.parametrize("query, expected", [
    ("Daesh", True),
    ("DAESH", True),
    ("Daeshville", False),
    ("daesh*", True),
    ('"Deir ez-Zor"', True),
    ("deir-ez-zor", True),
    ('"deir ez zor"', True),
    ('"zor ez deir"', False),
    ("Euphrate", True),  # written "l’Euphrate"
    ("l'Euphrate", True),
    ("l’euphrate", True),
    ("États-Unis", True),
    ('"etats unis"', True),
    ("etats-unis", True),
    ("etatsunis", False),
    ("\"États-Unis d'Amérique\"", True),
    ("PÉTROLE", True),
    ("petrole", True),
    ("Bahrein", True),  # written "Bahreïn"
    ("syri*", True),
    ("syrien*", True),
    ("damas*", False),
    ("McKenzie AND Hill", True),
    ("McKenzie AND Mattis", False),
    ("Mattis OR McKenzie", True),
    ("Daesh AND NOT Kurdes", False),
    ("Daesh NOT Raqqa", True),
    ("(Raqqa OR Euphrate) AND NOT (Mattis OR Trump)", True),
    ('"Deir ez-Zor" NEAR/8 Euphrate', True),
    ('"Deir ez-Zor" NEAR/7 Euphrate', False),
    ('Euphrate NEAR/8 "Deir ez-Zor"', True),  # either order
    ("pétrole NEAR/7 Daesh", True),
    ("pétrole NEAR/6 Daesh", False),
    ("Kenneth NEAR/1 McKenzie", True),  # "Kenneth F. McKenzie"
    ("Kenneth NEAR/0 McKenzie", False),
    ("Daesh NEAR/50 Daesh", True),  # two different occurrences
    ("title:Syrie", True),
    ("title:Daesh", False),
    ("text:Daesh", True),
    ("title:(Daesh OR américaines)", True),
    ("text:américaines", False),  # only in the title
    ("américaines NEAR/3 troupes", True),  # both in the title
])
def test_seed_article(query, expected):
    assert bool(hits(query, article(SEED, SEED_TITLE))) is expected


@pytest.mark.parametrize("text, query, expected", [
    ("The Daeshville council met on Monday.", "Daesh", False),
    ("The Daeshville council met on Monday.", "Daeshville", True),
    ("The Daeshville council met on Monday.", "daesh*", True),
    ("An Encyclopædia of œuvres about Straße names.", "encyclopaedia AND oeuvres AND strasse", True),
    ("An Encyclopaedia of oeuvres about Strasse names.", "Encyclopædia AND œuvres AND Straße", True),
    ("It's the minister's decision.", "minister", True),
    ("It's the minister’s decision.", "\"minister's decision\"", True),
    ("A well-known oil field.", '"well known"', True),
    ("A well-known oil field.", "well-known", True),
    ("A well-known oil field.", "wellknown", False),
    ("Oil prices rose while the army stayed.", "oil NEAR/2 rose", True),
    ("Oil prices rose while the army stayed.", "oil NEAR/2 army", False),
    ("A café in Zürich.", "cafe zurich", True),
    ("Le pe\u0301trole brut.", "pétrole", True),  # decomposed accent in the article
    ("Le petrole brut.", "pe\u0301trole", True),  # decomposed accent in the rule
])
def test_english_sentences(text, query, expected):
    assert bool(hits(query, article(text, language="en"))) is expected


@pytest.mark.parametrize("scope, feed_url, tags, expected", [
    ({"feeds": (FEED,)}, FEED, frozenset(), True),
    ({"feeds": ("https://other.example/rss",)}, FEED, frozenset(), False),
    ({"feeds": ("tag:syria",)}, FEED, frozenset({"syria", "news"}), True),
    ({"feeds": ("tag:Syria",)}, FEED, frozenset({"syria"}), True),
    ({"feeds": ("tag:syria",)}, FEED, frozenset({"sport"}), False),
    ({"feeds": ("https://other.example/rss", "tag:energy")}, FEED, frozenset({"energy"}), True),
])
def test_feed_scope(scope, feed_url, tags, expected):
    assert bool(hits("Daesh", article(SEED, feed_url=feed_url), tags, **scope)) is expected


@pytest.mark.parametrize("languages, language, expected", [
    ((), "de", True),
    (("fr",), "fr", True),
    (("fr",), "fr-FR", True),
    (("FR", "en"), "en", True),
    (("en",), "fr", False),
    (("en",), None, True),  # unknown language passes
])
def test_language_scope(languages, language, expected):
    assert bool(hits("Daesh", article(SEED, language=language), languages=languages)) is expected


@pytest.mark.parametrize("min_words, word_count, expected", [
    (0, 0, True),
    (400, 0, True),  # counted from the text: 448 words
    (500, 0, False),
    (500, 600, True),  # the extractor's count wins when it has one
    (700, 600, False),
])
def test_min_words_scope(min_words, word_count, expected):
    assert bool(hits("Daesh", article(SEED, word_count=word_count), min_words=min_words)) is expected


def test_one_hit_per_matching_rule_in_rule_order():
    rules = [Rule.from_query(name, query) for name, query in [
        ("kurds", "Kurdes"), ("absent", "Mattis"), ("oil", "pétrole AND Daesh"), ("neg", "Daesh NOT Kurdes"),
        ("syria", "syri*")]]
    found = match_article(compile_rules(rules), 42, article(SEED, SEED_TITLE))
    assert [h.alert for h in found] == ["kurds", "oil", "syria"]
    first = found[0]
    assert (first.article_id, first.url, first.feed_url) == (42, "https://example.org/a/1", FEED)
    assert first.title == SEED_TITLE


QUERIES = ["Daesh", "Daeshville", "syri*", "syrien*", '"Deir ez-Zor" NEAR/8 Euphrate', "Kurdes NOT Turcs",
           "Mattis OR Bahreïn", "title:pétrole", "text:américaines", "McKenzie AND NOT (Raqqa OR Hill)",
           "(Kurdes OR Turcs) AND frontière*", '"forces états-uniennes"', "Daesh NEAR/0 pétrole"]


def test_one_matcher_for_all_rules_agrees_with_one_matcher_per_rule():
    doc = article(SEED, SEED_TITLE)
    rules = [Rule.from_query(f"r{i}", q) for i, q in enumerate(QUERIES)]
    together = [h.alert for h in match_article(compile_rules(rules), 1, doc)]
    alone = [r.name for r in rules if match_article(compile_rules([r]), 1, doc)]
    assert together == alone
    assert 3 < len(together) < len(rules)


@pytest.mark.parametrize("query, terms", [
    ("Daesh OR États-Unis", ("États-Unis", "Daesh")),  # article order; "Etats-Unis" folds into "États-Unis"
    ("syri*", ("Syrie", "syriennes", "syrienne")),
    ("Daesh AND NOT Raqqa", ("Daesh",)),  # terms under NOT are not reported
    ("pétrole OR Daesh", ("pétrole", "Daesh")),  # title first: "pétrole" is in the title
    ("title:pétrole", ("pétrole",)),
    ('"Deir ez-Zor" NEAR/8 euphrate', ("Deir ez-Zor", "Euphrate")),
])
def test_matched_terms_are_surface_forms_in_article_order(query, terms):
    (hit,) = hits(query, article(SEED, SEED_TITLE))
    assert hit.matched_terms == terms


@pytest.mark.parametrize("query", QUERIES + ["Euphrate Bahreïn Kurdes", "Hill Daesh", "États-Unis OR Unis"])
def test_snippet_is_short_and_both_forms_agree(query):
    for hit in hits(query, article(SEED, SEED_TITLE)):
        assert 0 < len(visible(hit.snippet)) <= SNIPPET_CHARS
        as_plain = html.unescape(hit.snippet_html.replace("<mark>", "**").replace("</mark>", "**"))
        assert as_plain == hit.snippet
        assert "**" in hit.snippet


def test_snippet_highlights_the_sentence_with_most_terms():
    (hit,) = hits('"Deir ez-Zor" AND Euphrate', article(SEED, SEED_TITLE))
    assert hit.snippet == ("L’opération est basée dans le gouvernorat de **Deir ez-Zor**, une province "
                           "syrienne située à cheval sur l’**Euphrate** et abritant de nombreux gisements "
                           "de pétrole du pays.")
    assert "<mark>Deir ez-Zor</mark>" in hit.snippet_html and "l’<mark>Euphrate</mark>" in hit.snippet_html


def test_snippet_adds_sentences_for_terms_not_yet_shown():
    (hit,) = hits("Euphrate AND Bahreïn", article(SEED))
    assert "**Euphrate**" in hit.snippet and "**Bahreïn**" in hit.snippet
    assert hit.snippet.index("Euphrate") < hit.snippet.index("Bahreïn")  # document order
    assert len(visible(hit.snippet)) <= SNIPPET_CHARS


def test_long_sentence_is_trimmed_around_the_terms():
    (hit,) = hits("Hill AND combattants", article(SEED))
    text = visible(hit.snippet)
    assert text.startswith("…") and "**Hill**" in hit.snippet and "**combattants**" in hit.snippet
    assert text.strip("…") in " ".join(SEED.split())  # one contiguous stretch of the article


def test_trimming_cuts_at_word_boundaries_on_both_sides():
    words = [f"mot{i:03d}" for i in range(120)]
    words[60], words[70] = "Daesh", "pétrole"
    text = " ".join(words) + "."
    (hit,) = hits("Daesh AND pétrole", article(text))
    shown = visible(hit.snippet)
    assert shown.startswith("…") and shown.endswith("…") and len(shown) <= SNIPPET_CHARS
    assert "**Daesh**" in hit.snippet and "**pétrole**" in hit.snippet
    assert all(word in words for word in shown.strip("…").split()), "a word was cut in half"
    assert shown.strip("…") in text


def test_overlapping_terms_are_highlighted_once():
    (hit,) = hits("États-Unis OR Unis", article("Les États-Unis et les Nations unies."))
    assert hit.snippet == "Les **États-Unis** et les Nations unies."
    assert hit.matched_terms == ("États-Unis",)


def test_title_only_match_uses_the_title():
    doc = article("Nothing relevant is said in the body of this article.", "Daesh <claims> attack")
    (hit,) = hits("title:Daesh", doc)
    assert hit.snippet == "**Daesh** <claims> attack"
    assert hit.snippet_html == "<mark>Daesh</mark> &lt;claims&gt; attack"


def test_snippet_html_escapes_everything_but_the_marks():
    doc = article('Oil & gas: <script>alert("x")</script> near Daesh positions, said "R&D" staff.', language="en")
    (hit,) = hits("Daesh", doc)
    assert "<script>" in hit.snippet  # the plain snippet is plain text, escaped by whoever renders it
    assert "<script>" not in hit.snippet_html
    assert hit.snippet_html == ("Oil &amp; gas: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; near "
                                "<mark>Daesh</mark> positions, said &quot;R&amp;D&quot; staff.")


def test_snippet_function_takes_strings():
    plain, marked = snippet(article(SEED), ["Deir ez-Zor", "euphrate", "syri*"])
    assert "**Deir ez-Zor**" in plain and "**Euphrate**" in plain and "**syrienne**" in plain
    assert "<mark>syrienne</mark>" in marked


def test_snippet_without_terms_is_the_opening_sentence():
    plain, marked = snippet(article("First sentence here. Second one."), [])
    assert (plain, marked) == ("First sentence here.", "First sentence here.")
    assert snippet(article(""), ["x"]) == ("", "")


def test_decomposed_accents_are_highlighted_as_whole_words():
    (hit,) = hits("pétrole", article("Le pe\u0301trole brut."))
    assert hit.snippet == "Le **pe\u0301trole** brut."
    assert hit.matched_terms == ("pe\u0301trole",)


def test_an_initial_does_not_end_a_sentence():
    (hit,) = hits("McKenzie AND Kenneth", article("Intro. The general Kenneth F. McKenzie spoke. Outro."))
    assert hit.snippet == "The general **Kenneth** F. **McKenzie** spoke."


def _documented_examples() -> list[tuple[str, str, str]]:
    lines = (Path(__file__).parents[1] / "docs/ALERTS-RULES.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| Query | Matches | Does not match |") + 2
    rows = [line.strip("|").split(" | ") for line in itertools.takewhile(lambda x: x.startswith("|"), lines[start:])]
    return [(q.strip().strip("`"), yes.strip(), no.strip()) for q, yes, no in rows]


@pytest.mark.parametrize("query, matching, other", _documented_examples())
def test_documented_examples(query, matching, other):
    assert hits(query, article(matching))
    assert not hits(query, article(other))
