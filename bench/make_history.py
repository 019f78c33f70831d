"""Synthetic article history for benchmarks, as Parquet files for `newsmon import FILE...`.

    .venv/bin/python bench/make_history.py OUT_DIR --articles N [--seed 7] [--rows-per-file 100000]
                                           [--copy-rate 0.01] [--end YYYY-MM-DD] [--overwrite]

Writes to OUT_DIR:

* history-0000.parquet, history-0001.parquet, ...: N articles in all, --rows-per-file per file (the
  last one may hold fewer), in published_at order, ZSTD-compressed, with the import columns
  url, text, title, published_at (TIMESTAMP WITH TIME ZONE), language, author, feed_url
  (VARCHAR except published_at; url and text never NULL, author NULL for ~30% of rows).
* planted.parquet: the ground truth of the planted copies, one row per copy:
  url (the copy), original_url, kind ('exact' or 'near').

Articles. Each text is a random mix of 23-45 real sentences of the article bodies in
shared/corpus/articles/ground_truth.json (deduplicated, at least 5 words, no CJK), in paragraphs of
about 3 sentences, about 4,500 characters on average; two unrelated texts share almost no 5-word
shingle. title is the first sentence cut to ~80 characters; url is
https://site{k}.example/{yyyy}/{mm}/{slug}-{i} (k one of 500 sites, a few large and many small,
i the article's row number, so urls are unique); feed_url is https://site{k}.example/feed.xml;
published_at is spread evenly over the 365 days before --end (UTC, default today at 00:00 UTC);
language is 'en', 'fr' or 'de' at random (metadata only: the sentences are whatever language
the corpus has).

Planted copies. round(N * --copy-rate) rows, half of them exact and half near copies, each of an
earlier original article (never of a copy), published on another site a few hours to a few days
after the original (always strictly later):
* exact: the original's text, byte for byte or with only case, punctuation, quotes or whitespace
  changed, so newsmon's normalised content hash is equal;
* near: the original with 5-15% of its sentences dropped or replaced, and/or a short boilerplate
  paragraph ("Reporting by X; editing by Y") appended; the Jaccard similarity of the 5-word
  shingle sets (newsmon's tokens) to the original is at least 0.7, checked for every copy.

The output is the same for the same arguments (seed, article count, rows per file, copy rate and
--end). Memory stays bounded: rows are built and written one file at a time, and only the sentence
lists of the most recent originals are kept to plant copies from.
"""
from __future__ import annotations

import argparse
import bisect
import importlib.util
import json
import os
import random
import re
import sys
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path

# duckdb tries `import pandas` for every few Python objects it scans; without pandas each failed
# import walks sys.path (~15 s per 20k rows). Marking it absent makes the failure instant.
if importlib.util.find_spec("pandas") is None:
    sys.modules["pandas"] = None  # type: ignore[assignment]

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ingest.dedup import tokens  # noqa: E402

CORPUS = REPO.parent / "shared/corpus/articles/ground_truth.json"

TARGET_CHARS = 4500
SPREAD = 11  # sentences per text: the mean fitted to TARGET_CHARS, +- SPREAD
PARAGRAPH_BREAK = 0.3  # chance that a sentence ends its paragraph: ~3.3 sentences per paragraph
SITES = 500
DAYS = 365
LANGUAGES = ("en", "fr", "de")
LANGUAGE_WEIGHTS = (0.6, 0.3, 0.1)
NO_AUTHOR = 0.3
EXACT_SHARE = 0.5
MEAN_DELAY_H = 12.0  # copies follow their original by an exponential delay, capped at MAX_DELAY_H
MAX_DELAY_H = 7 * 24.0
RECENT = 20_000  # originals kept to copy from; older ones are forgotten (bounded memory)
SHINGLE = 5
MIN_NEAR_JACCARD = 0.7  # near copies must stay well above newsmon's 0.6 threshold
TITLE_CHARS = 80

FIRST = ("Anna", "David", "Li", "Sofia", "James", "Maria", "Lucas", "Emma", "Omar", "Chloé", "Jonas",
         "Aisha", "Pierre", "Hanna", "Mateo", "Yuki", "Grace", "Tomás", "Nadia", "Felix")
LAST = ("Keller", "Moreau", "Wei", "Rossi", "Okafor", "Santos", "Dubois", "Schmidt", "Nguyen", "Garcia",
        "Martin", "Müller", "Kowalski", "Haddad", "Lefèvre", "Brown", "Silva", "Tanaka", "Novak", "Weber")
BOILERPLATE = (
    "Reporting by {a}; editing by {b}.",
    "Additional reporting by {a} and {b}; editing by {c}.",
    "This story was first published on site{k}.example. Reporting by {a}.",
    "Copyright {y} site{k}.example. All rights reserved. Distributed by {a} for the wire desk.",
)

# Split after . ! ? followed by whitespace, but not after the usual English abbreviations
# (otherwise "Mr. Smith said" becomes two "sentences").
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bNo\.)(?<!\bMrs\.)(?<!\bU\.S\.)\s+")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


# ---------------------------------------------------------------- sentence pool

def load_sentences(corpus: Path) -> list[str]:
    """Distinct sentences of the corpus bodies with at least 5 words and no CJK, in corpus order."""
    truth = json.loads(corpus.read_text(encoding="utf-8"))
    seen: dict[str, None] = {}
    for key in sorted(truth):
        for para in (truth[key].get("articleBody") or "").split("\n"):
            for sentence in _SENTENCE_END.split(para.strip()):
                sentence = " ".join(sentence.split())
                # Short fragments ("Buy Now", "Photo:") recur across articles and CJK text has no
                # spaces to count words by; both would make unrelated texts look alike.
                if len(sentence.split()) >= 5 and not _CJK.search(sentence):
                    seen.setdefault(sentence)
    return list(seen)


@dataclass(frozen=True)
class Pool:
    """The sentences, and each one with its separator: code j is sentence j % n followed by a space
    (j < n) or by a paragraph break (j >= n), so a text is just a list of small ints."""

    sentences: list[str]
    pieces: list[str]
    lo: int
    hi: int

    @classmethod
    def build(cls, sentences: list[str]) -> "Pool":
        """Pool of these sentences, with the sentence-count range fitted to TARGET_CHARS."""
        mean_len = sum(map(len, sentences)) / len(sentences) + 1 + PARAGRAPH_BREAK
        mid = round(TARGET_CHARS / mean_len)
        pieces = [s + " " for s in sentences] + [s + "\n\n" for s in sentences]
        return cls(sentences, pieces, max(2, mid - SPREAD), mid + SPREAD)

    @property
    def size(self) -> int:
        """Number of distinct sentences."""
        return len(self.sentences)

    def render(self, codes: list[int], suffix: str = "") -> str:
        """The text of a code list, plus an optional final paragraph."""
        text = "".join(itemgetter(*codes)(self.pieces)) if len(codes) > 1 else self.pieces[codes[0]]
        return text.rstrip() + suffix

    def first_sentence(self, codes: list[int]) -> str:
        """The sentence the text starts with."""
        return self.sentences[codes[0] % self.size]


# ---------------------------------------------------------------- metadata

def title_of(sentence: str) -> str:
    """The sentence cut at a word boundary to about TITLE_CHARS characters."""
    if len(sentence) <= TITLE_CHARS:
        return sentence
    cut = sentence.rfind(" ", 0, TITLE_CHARS)
    return sentence[: cut if cut > 20 else TITLE_CHARS].rstrip(" ,;:") + "…"


def slug_of(title: str) -> str:
    """ASCII slug of the first words of a title ('story' when nothing ASCII is left)."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    words = _SLUG_JUNK.sub(" ", ascii_title).split()[:7]
    return "-".join(words)[:60].strip("-") or "story"


def site_weights() -> np.ndarray:
    """A few large sites and a long tail of small ones (Zipf-like)."""
    w = 1.0 / np.arange(1, SITES + 1) ** 0.8
    return w / w.sum()


def article_url(site: int, at_us: int, title: str, row: int) -> str:
    """https://site{k}.example/{yyyy}/{mm}/{slug}-{row}: unique because the row number is."""
    at = datetime.fromtimestamp(at_us // 1_000_000, timezone.utc)
    return f"https://site{site}.example/{at.year:04d}/{at.month:02d}/{slug_of(title)}-{row}"


def feed_url(site: int) -> str:
    """The site's feed."""
    return f"https://site{site}.example/feed.xml"


def person(rnd: random.Random) -> str:
    """A random author name."""
    return f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"


# ---------------------------------------------------------------- planted copies

@dataclass(frozen=True)
class Original:
    """What is kept of an original to plant copies of it (its codes, never its text)."""

    url: str
    at_us: int
    site: int
    codes: tuple[int, ...]
    language: str
    author: str | None


class Recent:
    """The most recent originals in published_at order, at most 2*RECENT of them."""

    def __init__(self) -> None:
        self.items: list[Original] = []
        self.times: list[int] = []

    def add(self, original: Original) -> None:
        """Remember an original; forget the oldest RECENT once 2*RECENT are held (amortised O(1))."""
        self.items.append(original)
        self.times.append(original.at_us)
        if len(self.items) >= 2 * RECENT:
            del self.items[:RECENT], self.times[:RECENT]

    def pick(self, at_us: int, rnd: random.Random) -> Original:
        """The original published closest before at_us minus a random syndication delay."""
        delay_h = min(rnd.expovariate(1.0 / MEAN_DELAY_H), MAX_DELAY_H)
        target = at_us - int(delay_h * 3600e6)
        i = bisect.bisect_right(self.times, target) - 1
        return self.items[max(i, 0)]


def shingle_set(text: str) -> set[str]:
    """5-word shingles of newsmon's tokens of the text."""
    words = tokens(text)
    return {" ".join(words[i : i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets."""
    return len(a & b) / len(a | b)


def exact_variant(text: str, rnd: random.Random) -> str:
    """The same text, or with case, quotes, punctuation or whitespace changed (same normalised text)."""
    kinds = rnd.sample(("same", "case", "quotes", "punctuation", "whitespace"), 2)
    if "same" in kinds:
        return text
    if "case" in kinds:
        head = text.find("\n\n")
        head = len(text) if head < 0 else head
        text = text[:head].upper() + text[head:]  # an all-caps lede, as some wire feeds send it
    if "quotes" in kinds:
        text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    if "punctuation" in kinds:
        text = text.replace(".\n\n", "\n\n").replace(" — ", " - ").replace("...", "…")
    if "whitespace" in kinds:
        text = "\n " + text.replace("\n\n", "\n \n").replace(". ", ".  ") + " \n"
    return text


def boilerplate(rnd: random.Random, year: int) -> str:
    """A short credit paragraph, as wires and syndication partners append."""
    template = rnd.choice(BOILERPLATE)
    line = template.format(a=person(rnd), b=person(rnd), c=person(rnd), k=rnd.randrange(SITES), y=year)
    return "\n\n" + line


def edit_codes(codes: list[int], pool: Pool, rnd: random.Random, frac: float, replace: bool) -> list[int]:
    """Drop, or replace with random pool sentences, a fraction of the sentences (at least one)."""
    k = min(len(codes) - 1, max(1, round(len(codes) * frac)))
    where = set(rnd.sample(range(len(codes)), k))
    if not replace:
        return [c for i, c in enumerate(codes) if i not in where]
    # A replaced sentence keeps its separator, so the paragraph layout stays the same.
    return [rnd.randrange(pool.size) + (c // pool.size) * pool.size if i in where else c
            for i, c in enumerate(codes)]


def near_copy(orig: Original, pool: Pool, rnd: random.Random, year: int) -> tuple[list[int], str]:
    """Codes and suffix of an edited copy whose shingle Jaccard to the original is >= MIN_NEAR_JACCARD."""
    codes = list(orig.codes)
    before = shingle_set(pool.render(codes))
    for attempt in range(4):
        kind = rnd.choice(("drop", "replace", "boilerplate", "drop+boilerplate"))
        # Each failed attempt halves the edit; the last resort (boilerplate only) always passes.
        frac = rnd.uniform(0.05, 0.15) / (2**attempt)
        new = codes if kind == "boilerplate" else edit_codes(codes, pool, rnd, frac, kind == "replace")
        suffix = boilerplate(rnd, year) if "boilerplate" in kind else ""
        if jaccard(before, shingle_set(pool.render(new, suffix))) >= MIN_NEAR_JACCARD:
            return new, suffix
    return codes, boilerplate(rnd, year)


# ---------------------------------------------------------------- generation

@dataclass
class Plan:
    """Run-wide settings and the rows that are planted copies."""

    articles: int
    rows_per_file: int
    start_us: int
    span_us: int
    copies: dict[int, str]  # row -> 'exact' | 'near'
    seeds: list[np.random.SeedSequence]  # one per file


def make_plan(articles: int, rows_per_file: int, copy_rate: float, seed: int, end: date) -> Plan:
    """Choose the copy rows and kinds up front; everything else is drawn file by file."""
    n_files = max(1, -(-articles // rows_per_file))
    root = np.random.SeedSequence(seed)
    plan_seed, *file_seeds = root.spawn(n_files + 1)
    rng = np.random.default_rng(plan_seed)
    n_copies = min(round(articles * copy_rate), max(articles - 1, 0))
    rows = np.sort(rng.choice(np.arange(1, articles), size=n_copies, replace=False)) if n_copies else []
    exact = rng.random(n_copies) < EXACT_SHARE
    copies = {int(r): "exact" if e else "near" for r, e in zip(rows, exact)}
    end_us = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp() * 1e6)
    span_us = DAYS * 86_400_000_000
    return Plan(articles, rows_per_file, end_us - span_us, span_us, copies, file_seeds)


@dataclass
class Columns:
    """The rows of one file, column by column (what duckdb scans)."""

    url: list[str]
    text: list[str]
    title: list[str]
    at_us: list[int]
    language: list[str]
    author: list[str | None]
    feed_url: list[str]

    @classmethod
    def empty(cls) -> "Columns":
        """No rows yet."""
        return cls([], [], [], [], [], [], [])

    def append(self, url: str, text: str, title: str, at_us: int, language: str, author: str | None, site: int) -> None:
        """One row."""
        self.url.append(url)
        self.text.append(text)
        self.title.append(title)
        self.at_us.append(at_us)
        self.language.append(language)
        self.author.append(author)
        self.feed_url.append(feed_url(site))


def file_rows(plan: Plan, file_no: int, pool: Pool, recent: Recent, planted: list[tuple[str, str, str]]) -> Columns:
    """Rows of one output file; originals go into `recent`, planted copies into `planted`."""
    first = file_no * plan.rows_per_file
    n = min(plan.rows_per_file, plan.articles - first)
    rng = np.random.default_rng(plan.seeds[file_no])
    rnd = random.Random(int(rng.integers(2**63)))  # scalar draws: Python's random is faster per call
    # Bulk draws for all rows of the file at once (a copy row's drawn sentences are just unused).
    counts = rng.integers(pool.lo, pool.hi + 1, size=n)
    codes = rng.integers(0, pool.size, size=int(counts.sum())) + pool.size * (rng.random(int(counts.sum())) < PARAGRAPH_BREAK)
    codes = codes.tolist()
    offsets = np.concatenate(([0], np.cumsum(counts))).tolist()
    sites = rng.choice(SITES, size=n, p=site_weights()).tolist()
    langs = rng.choice(len(LANGUAGES), size=n, p=LANGUAGE_WEIGHTS).tolist()
    has_author = (rng.random(n) >= NO_AUTHOR).tolist()
    # Row i is published in the i-th of `articles` equal slices of the span: later rows are later.
    rows = np.arange(first, first + n)
    at = (plan.start_us + (rows + rng.random(n)) * (plan.span_us / plan.articles)).astype(np.int64).tolist()

    out = Columns.empty()
    for j in range(n):
        row = first + j
        kind = plan.copies.get(row)
        if kind is None:
            text_codes = codes[offsets[j] : offsets[j + 1]]
            title = title_of(pool.first_sentence(text_codes))
            author = person(rnd) if has_author[j] else None
            url = article_url(sites[j], at[j], title, row)
            out.append(url, pool.render(text_codes), title, at[j], LANGUAGES[langs[j]], author, sites[j])
            recent.add(Original(url, at[j], sites[j], tuple(text_codes), LANGUAGES[langs[j]], author))
            continue
        orig = recent.pick(at[j], rnd)
        at_us = max(at[j], orig.at_us + 60_000_000)  # strictly later than the original, whatever the draw
        site = (orig.site + 1 + rnd.randrange(SITES - 1)) % SITES  # never the original's site
        if kind == "exact":
            copy_codes, text = list(orig.codes), exact_variant(pool.render(list(orig.codes)), rnd)
        else:
            year = datetime.fromtimestamp(at_us // 1_000_000, timezone.utc).year
            copy_codes, suffix = near_copy(orig, pool, rnd, year)
            text = pool.render(copy_codes, suffix)
        title = title_of(pool.first_sentence(copy_codes))
        author = orig.author if rnd.random() < 0.5 else (person(rnd) if has_author[j] else None)
        url = article_url(site, at_us, title, row)
        out.append(url, text, title, at_us, orig.language, author, site)
        planted.append((url, orig.url, kind))
    return out


def session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of its own (one per thread), without progress bar."""
    cur = con.cursor()
    cur.execute("SET enable_progress_bar = false")
    return cur


def write_parquet(con: duckdb.DuckDBPyConnection, cols: Columns, path: Path) -> None:
    """The rows as a ZSTD Parquet file with the import columns, written to a temp name then renamed."""
    d = {  # duckdb scans a dict of numpy arrays directly (no pandas or pyarrow needed)
        "url": np.array(cols.url, dtype=object),
        "text": np.array(cols.text, dtype=object),
        "title": np.array(cols.title, dtype=object),
        "at_us": np.array(cols.at_us, dtype=np.int64),
        "language": np.array(cols.language, dtype=object),
        "author": np.array(cols.author, dtype=object),
        "feed_url": np.array(cols.feed_url, dtype=object),
    }
    tmp = path.with_name(path.name + ".tmp")
    session(con).execute(
        f"""COPY (SELECT url::VARCHAR AS url, text::VARCHAR AS text, title::VARCHAR AS title,
                         make_timestamptz(at_us) AS published_at, language::VARCHAR AS language,
                         author::VARCHAR AS author, feed_url::VARCHAR AS feed_url FROM d)
            TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    os.replace(tmp, path)


def write_planted(con: duckdb.DuckDBPyConnection, planted: list[tuple[str, str, str]], path: Path) -> None:
    """The ground truth: copy url, original url, kind."""
    d = {  # noqa: F841 (scanned by duckdb by name)
        "url": np.array([p[0] for p in planted], dtype=object),
        "original_url": np.array([p[1] for p in planted], dtype=object),
        "kind": np.array([p[2] for p in planted], dtype=object),
    }
    tmp = path.with_name(path.name + ".tmp")
    session(con).execute(
        f"""COPY (SELECT url::VARCHAR AS url, original_url::VARCHAR AS original_url, kind::VARCHAR AS kind FROM d)
            TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)"""
    )
    os.replace(tmp, path)


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Create OUT_DIR; refuse to mix with the output of an earlier run unless told to remove it."""
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob("history-*.parquet")) + sorted(out.glob("planted.parquet"))
    if old and not overwrite:
        sys.exit(f"{out} already holds {old[0].name} and {len(old) - 1} more output file(s); pass --overwrite to replace them")
    for f in old:
        f.unlink()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    ap.add_argument("--articles", type=int, required=True, help="number of rows in all history files")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rows-per-file", type=int, default=100_000)
    ap.add_argument("--copy-rate", type=float, default=0.01, help="share of rows that are planted copies")
    ap.add_argument("--end", type=date.fromisoformat, default=datetime.now(timezone.utc).date(),
                    help="published_at covers the 365 days before this UTC date (default: today)")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="ground_truth.json with the source bodies")
    ap.add_argument("--overwrite", action="store_true", help="remove history-*.parquet and planted.parquet first")
    args = ap.parse_args(argv)
    if args.articles < 1 or args.rows_per_file < 1:
        ap.error("--articles and --rows-per-file must be at least 1")
    if not 0.0 <= args.copy_rate <= 0.5:
        ap.error("--copy-rate must be between 0 and 0.5")
    return args


def main(argv: list[str] | None = None) -> None:
    """Generate the history files and the ground truth."""
    args = parse_args(argv)
    started = time.perf_counter()
    prepare_out_dir(args.out_dir, args.overwrite)
    pool = Pool.build(load_sentences(args.corpus))
    plan = make_plan(args.articles, args.rows_per_file, args.copy_rate, args.seed, args.end)
    con = duckdb.connect()
    # One thread per COPY: the scan of Python objects holds the GIL anyway, and a single thread keeps
    # row order and row groups identical from run to run.
    con.execute("SET threads = 1")
    recent, planted = Recent(), []
    chars = 0
    # File n is written in a background thread while file n+1 is generated (duckdb lets go of the
    # GIL while it compresses); waiting for n before handing over n+1 keeps two files in memory at most.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for file_no in range(len(plan.seeds)):
            cols = file_rows(plan, file_no, pool, recent, planted)
            chars += sum(map(len, cols.text))
            if pending is not None:
                pending.result()
            path = args.out_dir / f"history-{file_no:04d}.parquet"
            pending = writer.submit(write_parquet, con, cols, path)
            pending.add_done_callback(lambda _, p=path, n=len(cols.url): print(
                f"{p.name}: {n} rows, {time.perf_counter() - started:.1f} s", file=sys.stderr))
            del cols
        pending.result()
    write_planted(con, planted, args.out_dir / "planted.parquet")
    size = sum(f.stat().st_size for f in args.out_dir.glob("*.parquet"))
    exact = sum(1 for p in planted if p[2] == "exact")
    print(f"{args.articles} articles in {len(plan.seeds)} file(s), {len(planted)} planted copies "
          f"({exact} exact, {len(planted) - exact} near), mean text {chars / args.articles:.0f} chars, "
          f"{size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s "
          f"(pool: {pool.size} sentences, {pool.lo}-{pool.hi} per text)")


if __name__ == "__main__":
    main()
