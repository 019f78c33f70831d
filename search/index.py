"""The full-text index beside the store: tantivy (BM25, positions, per-language stemming), on disk.

One document per stored article, in `<name>.lake/search/`. Each language newsmon stems gets its own
pair of fields (`title_fr`, `text_fr`, ...), analysed by that language's Snowball stemmer after
lower-casing and accent folding; other languages go to `title_xx` / `text_xx` (folded, not stemmed).
A query is analysed per field by the same analyser, so "grève", "greve" and "grèves" meet in one
stem. The text itself is not stored (the lake holds it): only what a result line shows (url, title,
feed, language, date) and the text's first LEAD_CHARS characters, which snippets are cut from.

The lake is the truth: the index's watermark is the highest `seq` it holds, read back from the
index itself, so a run killed before the index commit is caught up from the lake on the next open.
Only the store's writer (holding writer.lock) opens a tantivy writer; readers open it read-only
and see the last commit.
"""
from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import tantivy

from alerts.query import language_code

# Primary language subtag -> tantivy's Snowball stemmer.
STEMMERS = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian",
            "pt": "portuguese", "nl": "dutch"}
OTHER = "xx"  # articles in any other (or no) language: folded, not stemmed
SLOTS = tuple(STEMMERS) + (OTHER,)
LEAD_CHARS = 600  # characters of text kept for snippets; more costs index size (docs/SEARCH.md)
SCHEMA_VERSION = "1"
_VERSION_FILE = "newsmon-search-version"
MAX_TOKEN = 40  # longer "words" (URLs, base64) are dropped


class IndexMissing(FileNotFoundError):
    """The store has no search index yet."""


class IndexDamaged(RuntimeError):
    """The index's files cannot be read (cut short, overwritten); it is rebuilt from the lake, never repaired."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged ({reason}): the next `newsmon run` rebuilds it from the store, "
                         f"or run `newsmon search --reindex`")
        self.reason = reason


@dataclass(frozen=True)
class IndexDoc:
    """What the index takes of an article."""

    id: int
    seq: int
    url: str
    title: str | None
    text: str | None
    published_at: datetime | None
    language: str | None
    feed_url: str | None


def index_dir(store: Path) -> Path:
    """The search index folder of a store folder (`x.lake/` -> `x.lake/search/`)."""
    return store / "search"


def slot_of(language: str | None) -> str:
    """The field suffix for an article's language: 'fr-FR' -> 'fr'; unknown or unstemmed -> 'xx'."""
    code = language_code(language)
    return code if code in STEMMERS else OTHER


@functools.lru_cache(maxsize=None)
def analyzer(slot: str) -> tantivy.TextAnalyzer:
    """Tokenise on non-alphanumerics, drop very long tokens, lower-case, fold accents, then stem."""
    builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.remove_long(MAX_TOKEN))
               .filter(tantivy.Filter.lowercase()).filter(tantivy.Filter.ascii_fold()))
    if slot in STEMMERS:
        builder = builder.filter(tantivy.Filter.stemmer(STEMMERS[slot]))
    return builder.build()


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=True, indexed=True, fast=True)
    builder.add_integer_field("seq", stored=True, fast=True)
    builder.add_date_field("published", stored=True, indexed=True, fast=True)
    builder.add_text_field("lang", stored=True, tokenizer_name="raw")
    builder.add_text_field("feed", stored=True, tokenizer_name="raw")
    builder.add_text_field("url", stored=True, index_option="basic", tokenizer_name="raw_unindexed")
    builder.add_text_field("title", stored=True, index_option="basic", tokenizer_name="raw_unindexed")
    builder.add_text_field("lead", stored=True, index_option="basic", tokenizer_name="raw_unindexed")
    for slot in SLOTS:
        builder.add_text_field(f"title_{slot}", tokenizer_name=f"newsmon_{slot}", index_option="position")
        builder.add_text_field(f"text_{slot}", tokenizer_name=f"newsmon_{slot}", index_option="position")
    return builder.build()


SCHEMA = _schema()


def _register(index: tantivy.Index) -> tantivy.Index:
    for slot in SLOTS:
        index.register_tokenizer(f"newsmon_{slot}", analyzer(slot))
    # Stored-only fields: a tokenizer that yields nothing keeps them out of the inverted index.
    index.register_tokenizer("raw_unindexed", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw())
                             .filter(tantivy.Filter.remove_long(1)).build())
    return index


def lead(text: str | None) -> str:
    """The first LEAD_CHARS characters of a text, cut at a word boundary."""
    text = text or ""
    if len(text) <= LEAD_CHARS:
        return text
    cut = text.rfind(" ", 0, LEAD_CHARS)
    return text[: cut if cut > LEAD_CHARS // 2 else LEAD_CHARS]


def _utc(value: datetime) -> datetime:
    return (value.astimezone(timezone.utc) if value.tzinfo else value).replace(tzinfo=None)


@functools.lru_cache(maxsize=1024)
def _code_and_slot(language: str | None) -> tuple[str, str]:
    # A few distinct values over millions of articles: parsed once each.
    return language_code(language), slot_of(language)


def document(doc: IndexDoc) -> tantivy.Document:
    """The tantivy document for an article."""
    code, slot = _code_and_slot(doc.language)
    out = tantivy.Document(id=doc.id, seq=doc.seq, url=doc.url, lang=code,
                           feed=doc.feed_url or "", title=doc.title or "", lead=lead(doc.text))
    out.add_text(f"title_{slot}", doc.title or "")
    out.add_text(f"text_{slot}", doc.text or "")
    if doc.published_at is not None:
        out.add_date("published", _utc(doc.published_at))
    return out


class SearchIndex:
    """An open search index: read-only, or with the store's single writer."""

    def __init__(self, path: Path, index: tantivy.Index, writer: tantivy.IndexWriter | None) -> None:
        self.path = path
        self.index = index
        self.writer = writer
        self.pending = 0  # documents added since the last commit

    @classmethod
    def open_reader(cls, path: Path) -> "SearchIndex":
        """Open read-only; raises IndexMissing when there is none (or one of another schema version)."""
        if not _current(path):
            raise IndexMissing(f"{path} does not exist yet: the next `newsmon run` builds it, "
                               f"or run `newsmon search --reindex`")
        return cls(path, _opened(path, lambda: tantivy.Index.open(str(path))), None)

    @classmethod
    def open_writer(cls, path: Path, heap_mb: int = 64, threads: int = 1, start_over: bool = False) -> "SearchIndex":
        """Open for writing, creating it (or starting over, if its schema is outdated or `start_over`); one
        writer per store. Raises IndexDamaged when its files cannot be read."""
        if path.exists() and (start_over or not _current(path)):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        index = _opened(path, lambda: tantivy.Index(SCHEMA, path=str(path), reuse=True))
        (path / _VERSION_FILE).write_text(SCHEMA_VERSION)
        return cls(path, index, index.writer(heap_size=heap_mb * 1_000_000, num_threads=threads))

    def last_seq(self) -> int:
        """The highest article seq the index holds (0 when empty): where catching up starts."""
        self.index.reload()
        hits = self.index.searcher().search(tantivy.Query.all_query(), 1, order_by_field="seq").hits
        return int(hits[0][0]) if hits else 0

    def add(self, docs: Iterable[IndexDoc]) -> int:
        """Queue documents; they become visible at the next commit."""
        n = 0
        for doc in docs:
            self.writer.add_document(document(doc))
            n += 1
        self.pending += n
        return n

    def commit(self) -> None:
        """Publish what was added (readers see it at their next open)."""
        if self.pending:
            self.writer.commit()
            self.pending = 0

    def clear(self) -> None:
        """Delete every document (takes effect at the next commit, so readers keep the old index till then)."""
        self.writer.delete_all_documents()
        self.pending += 1

    def close(self) -> None:
        """Commit, let background merges finish, release the writer."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        try:
            if self.pending:
                writer.commit()
                self.pending = 0
            writer.wait_merging_threads()
        finally:
            # Dropped even when the commit failed (a full disk): it holds the index's writer lock,
            # which the next writer of this process would otherwise wait for in vain.
            del writer

    def searcher(self) -> tantivy.Searcher:
        """A searcher on the last commit."""
        return self.index.searcher()

    def size_bytes(self) -> int:
        """Bytes on disk."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _opened(path: Path, open_index) -> tantivy.Index:
    """open_index() with the tokenizers registered; tantivy checks every segment file's footer as it opens
    them, so a file cut short or overwritten fails here, as IndexDamaged."""
    try:
        return _register(open_index())
    except ValueError as exc:  # tantivy's "Data corrupted", "Failed to open file for read ... Footer ..."
        reason = " ".join(str(exc).split(" Content:")[0].split())  # not the damaged bytes themselves
        raise IndexDamaged(path, reason[:200]) from None


def _current(path: Path) -> bool:
    version = path / _VERSION_FILE
    return version.is_file() and version.read_text().strip() == SCHEMA_VERSION and (path / "meta.json").is_file()
