"""Alert matching cost: 1,000 rules against 10 rules over the same synthetic articles.

Run: .venv/bin/python bench/alerts_bench.py [--articles 10000] [--rules 1000] [--seed 7]

Articles and rules are drawn from one synthetic vocabulary with a Zipf-like word distribution (a few
very common words, a long tail of rare ones), so rules hit some articles and miss most, as real alert
rules do. Rules mix single words, AND, OR, NOT, phrases, prefixes, NEAR and title: scopes.
Both rule sets run in the same process over the same articles, after a warm-up pass, in alternating
rounds; the best round of each counts.
"""
from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerts.match import match_article  # noqa: E402
from alerts.query import Matcher, Rule, compile_rules, normalise_tokens  # noqa: E402
from ingest.models import Article  # noqa: E402

ONSETS = ["b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "tr", "pl", "gr", "st", ""]
VOWELS = ["a", "e", "i", "o", "u", "ou", "ai", "é", "è", "ä", "ü", "io"]
CODAS = ["", "", "", "n", "r", "s", "l", "t", "x"]
COMMON_RANKS = 150  # the most frequent words behave like stop words
RULE_RANKS = 3_000  # rules draw their words from this rank on


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """Distinct pronounceable words, shortest first so that frequent words are short, as in real text."""
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choices([1, 2, 3, 4], weights=[3, 5, 4, 2])[0]
        words.add("".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)))
    ordered = sorted(words, key=lambda w: (len(w), w))
    tail = ordered[COMMON_RANKS:]
    rng.shuffle(tail)
    return ordered[:COMMON_RANKS] + tail


def zipf_weights(size: int, exponent: float = 1.07) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank ** exponent) for rank in range(1, size + 1)))


def sentence(rng: random.Random, words: list[str]) -> str:
    """Words joined mostly by spaces, sometimes by a comma or a hyphen; a few capitalised; final punctuation."""
    out = [words[0].capitalize()]
    for word in words[1:]:
        out.append(rng.choices([" ", ", ", "-", " l’"], weights=[90, 6, 2, 2])[0])
        out.append(word.capitalize() if rng.random() < 0.08 else word)
    return "".join(out) + rng.choice([".", ".", ".", "?", " !"])


def make_article(rng: random.Random, vocab: list[str], cum: list[float], number: int) -> Article:
    length = max(60, min(1500, int(rng.lognormvariate(6.0, 0.5))))
    drawn = rng.choices(vocab, cum_weights=cum, k=length + 12)
    parts, i = [], 12
    while i < len(drawn):
        n = rng.randint(10, 30)
        parts.append(sentence(rng, drawn[i:i + n]))
        i += n
    paragraphs = [" ".join(parts[j:j + 5]) for j in range(0, len(parts), 5)]
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return Article(url=f"https://news.example/{number}", feed_url="https://news.example/rss",
                   title=" ".join(drawn[:12]), author=None, published_at=now, date_source="feed", fetched_at=now,
                   language="fr", text="\n\n".join(paragraphs), content_hash=f"{number:064x}", extraction="trafilatura",
                   source_url=f"https://news.example/{number}", word_count=length)


def stem(word: str) -> str:
    """A prefix query as users write them (syri* for Syrie, syrien, syriennes); short words stay whole."""
    return f"{word[:max(5, len(word) - 3)]}*" if len(word) >= 7 else word


def rule_query(rng: random.Random, pick) -> str:
    """One rule in one of the shapes users write."""
    a, b, c = pick(), pick(), pick()
    shapes = [
        lambda: a,
        lambda: f"{a} {b}",
        lambda: f"{a} OR {b} OR {c}",
        lambda: f"({a} OR {b}) AND {c}",
        lambda: f"{a} AND NOT {b}",
        lambda: f'"{a} {b}"',
        lambda: stem(a),
        lambda: f"{a} NEAR/{rng.randint(3, 12)} {b}",
        lambda: f'title:{a} OR "{b} {c}"',
        lambda: f"({a} OR {stem(b)}) NOT ({c} OR {pick()})",
    ]
    return rng.choice(shapes)()


def make_rules(rng: random.Random, vocab: list[str], count: int) -> list[Rule]:
    # Alert rules name people, places, organisations: words from the middle and the tail of the distribution.
    topical = vocab[RULE_RANKS:]
    cum = zipf_weights(len(topical), 0.5)
    pick = lambda: rng.choices(topical, cum_weights=cum)[0]  # noqa: E731
    return [Rule.from_query(f"rule-{i}", rule_query(rng, pick)) for i in range(count)]


class Unindexed(Matcher):
    """For comparison only: every rule is a candidate for every article."""

    def candidates(self, vocabulary):
        return list(range(len(self.rules)))


def mean_candidates(matcher: Matcher, articles: list[Article]) -> float:
    counts = [len(matcher.candidates(set(normalise_tokens(f"{a.title} {a.text}")))) for a in articles]
    return sum(counts) / len(counts)


def run(matcher, articles: list[Article]) -> tuple[float, int]:
    start = time.perf_counter()
    found = sum(len(match_article(matcher, n, art)) for n, art in enumerate(articles))
    return time.perf_counter() - start, found


def side_by_side(matchers: list[Matcher], articles: list[Article], rounds: int = 2) -> list[tuple[float, int]]:
    """Best time of `rounds` for each matcher; rounds alternate between matchers so load on the machine
    affects them alike."""
    results = [[run(matcher, articles) for matcher in matchers] for _ in range(rounds)]
    return [min(column) for column in zip(*results)]


def main(argv: list[str] | None = None) -> None:
    """Print per-article matching times for a small and a large rule set and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    vocab = vocabulary(rng, 40_000)
    cum = zipf_weights(len(vocab))
    articles = [make_article(rng, vocab, cum, n) for n in range(args.articles)]
    rules = make_rules(rng, vocab, args.rules)
    words = sum(a.word_count for a in articles)
    print(f"{len(articles)} articles, {words / len(articles):.0f} words each on average; "
          f"vocabulary {len(vocab)} words (Zipf); {len(rules)} rules, e.g.:")
    for rule in rules[:8]:
        print(f"    {rule.query}")

    t0 = time.perf_counter()
    small, large = compile_rules(rules[:args.small]), compile_rules(rules)
    print(f"compile {args.small} + {len(rules)} rules: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    for art in articles:  # warm-up: both rule sets then start with the same word-folding cache
        normalise_tokens(f"{art.title} {art.text}")
    (small_s, small_hits), (large_s, large_hits) = side_by_side([small, large], articles)
    per = lambda s: s / len(articles) * 1e6  # noqa: E731
    for count, seconds, found in ((args.small, small_s, small_hits), (len(rules), large_s, large_hits)):
        print(f"{count:>5} rules: {per(seconds):8.1f} µs/article  ({seconds:.2f} s; {found} hits, "
              f"{found / len(articles):.2f} per article)")
    print(f"ratio {len(rules)}/{args.small} rules: {large_s / small_s:.2f}x  "
          f"(rules x{len(rules) / args.small:.0f})")
    sample = articles[:200]
    print(f"candidate rules per article (of {len(rules)}): {mean_candidates(large, sample):.1f}")
    unindexed_s, unindexed_hits = run(Unindexed(rules), sample)
    indexed_s, indexed_hits = run(large, sample)
    assert unindexed_hits == indexed_hits, "the index must not lose matches"
    print(f"without the index, {len(rules)} rules: {per(unindexed_s) * len(articles) / len(sample):8.1f} µs/article "
          f"({len(sample)} articles, same {indexed_hits} hits as with it)")


if __name__ == "__main__":
    main()
