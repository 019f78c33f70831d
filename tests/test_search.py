"""Search, stories, exports and alert feeds on one real store: the fixture site over loopback, plus an import."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import feedparser
import pytest

from flows.cli import main
from flows.config import load_settings
from flows.cycle import run_cycle
from flows.importer import import_files
from flows.search import index_path, search
from search.index import IndexMissing, SearchIndex
from search.query import Filters
from tests.helpers import query

SEED = "/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html"
PARTNER = "/partenaire/depeche-syrie-coalition.html"
FILLER = ("The report was published on the website of the authority and shared with the press in the morning, "
          "and the spokesperson answered questions about the schedule for the following weeks. ")
IMPORTED = [
    {"url": "https://wire.example/en/antwerp-dockers-strike", "title": "Dockworkers strike at the port of Antwerp",
     "text": "Dockworkers walked out at the port of Antwerp on Monday. The strikes spread to two terminals and "
             "ships queued in the estuary while unions and employers met. " + FILLER * 3,
     "language": "en", "published_at": "2024-06-01T08:00:00Z", "feed_url": "https://wire.example/en/feed"},
    {"url": "https://wire.example/en/port-traffic", "title": "Port authority reports record container traffic",
     "text": "The port authority reported record container traffic for the spring, helped by new cranes. "
             + FILLER * 3,
     "language": "en", "published_at": "2024-06-03T08:00:00Z", "feed_url": "https://wire.example/en/feed"},
    {"url": "https://wire.example/fr/greves-cheminots", "title": "Les grèves des cheminots paralysent le réseau",
     "text": "Les cheminots ont reconduit leurs grèves mardi ; le trafic des trains régionaux reste très perturbé "
             "et les usagers cherchent d’autres solutions pour se rendre au travail. " + FILLER * 3,
     "language": "fr", "published_at": "2024-06-02T08:00:00Z", "feed_url": "https://wire.example/fr/feed"},
    {"url": "https://wire.example/de/hafen-streik", "title": "Streik im Hamburger Hafen",
     "text": "Die Hafenarbeiter in Hamburg streiken seit dem Morgen; weitere Streiks sind angekündigt, "
             "und die Reedereien leiten Schiffe um. " + FILLER * 3,
     "language": "de", "published_at": "2024-06-04T08:00:00Z", "feed_url": "https://wire.example/de/feed"},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the whole module: a cycle over the fixture site, then an import of four articles."""
    from flows.fixture_site import FixtureSite

    root = tmp_path_factory.mktemp("search")
    with FixtureSite() as site:
        feeds = "".join(f'[[feeds]]\nurl = "{u}"\ntags = ["{"partner" if "partenaire" in u else "echo"}"]\n\n'
                        for u in site.feed_urls())
        config = root / "newsmon.toml"
        config.write_text(textwrap.dedent(f'''
            [storage]
            database = "data/newsmon.duckdb"

            [fetch]
            allow_private_networks = true
            timeout_s = 5
            retries = 0

            [alert_feeds]
            atom_dir = "feeds"

            [[alerts]]
            name = "syria"
            query = '"Deir ez-Zor" OR (Daesh AND pétrole)'
            ''') + feeds, encoding="utf-8")
        settings = load_settings(config)
        asyncio.run(run_cycle(settings))
        records = root / "wire.jsonl"
        records.write_text("".join(json.dumps(r) + "\n" for r in IMPORTED), encoding="utf-8")
        summary = import_files(settings, [records], workers=1)
        assert summary.imported == len(IMPORTED)
        yield {"config": str(config), "settings": settings, "site": site, "root": root,
               "seed": site.url(SEED), "partner": site.url(PARTNER, alt=True)}


def urls(hits) -> list[str]:
    return [h.url for h in hits]


def find(store, text: str, **filters) -> list[str]:
    originals = filters.pop("originals", False)
    return urls(search(store["settings"].database, text, Filters(**filters), originals=originals))


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_stored_article_is_indexed_once(store):
    count = query(store["settings"].database, "SELECT count(*) FROM articles")[0][0]
    index = SearchIndex.open_reader(index_path(store["settings"].database))
    assert index.searcher().num_docs == count == 4 + len(IMPORTED), "the run's four pages and the imported rows"


def test_french_stemming_and_accent_folding(store):
    greves = "https://wire.example/fr/greves-cheminots"
    assert find(store, "grève") == [greves], "singular finds the plural"
    assert find(store, "greve") == [greves], "without the accent"
    assert find(store, "CHEMINOT") == [greves], "upper case, singular"
    seed = find(store, "opérations déminages")
    assert store["seed"] in seed[:3], "the seed or one of the partner's copies of it first"


def test_english_and_german_stemming(store):
    assert find(store, "striking dockworker") == ["https://wire.example/en/antwerp-dockers-strike"]
    assert find(store, "title:strikes") == ["https://wire.example/en/antwerp-dockers-strike"]
    assert find(store, "streik", languages=("de",)) == ["https://wire.example/de/hafen-streik"]


def test_phrase_is_ordered_and_not_is_strict(store):
    assert store["seed"] in find(store, '"Deir ez-Zor"')
    assert find(store, '"Zor ez Deir"') == []
    with_daesh = find(store, "Daesh")
    assert store["seed"] in with_daesh and store["partner"] in with_daesh
    without = find(store, "Daesh AND NOT pétrole")
    assert store["seed"] not in without, "the seed mentions pétrole"
    # title: "Dockworkers strike at the port of Antwerp" (3 words apart); text: 4 words apart
    assert find(store, '"port of Antwerp" NEAR/2 dockworkers') == []
    assert find(store, '"port of Antwerp" NEAR/3 dockworkers') == ["https://wire.example/en/antwerp-dockers-strike"]
    assert find(store, 'text:"port of Antwerp" NEAR/3 dockworkers') == []
    assert find(store, "title:record") == ["https://wire.example/en/port-traffic"]
    assert find(store, "contai*", languages=("en",)) == ["https://wire.example/en/port-traffic"]
    assert store["seed"] in find(store, "opérat*"), "a prefix of an accented word, typed with its accent"


def test_plain_words_rank_all_first_then_some_but_explicit_and_filters(store):
    ranked = find(store, "strike port")
    assert ranked[0] == "https://wire.example/en/antwerp-dockers-strike", "both words"
    assert "https://wire.example/en/port-traffic" in ranked[1:], "one word, ranked after"
    assert find(store, "strike AND port") == ["https://wire.example/en/antwerp-dockers-strike"]


def test_filters_by_date_language_feed_and_copies(store):
    from datetime import datetime, timezone

    day = lambda d: datetime(2024, 6, d, tzinfo=timezone.utc)  # noqa: E731
    assert find(store, "port", since=day(2), until=day(4)) == ["https://wire.example/en/port-traffic"]
    assert find(store, "Daesh", languages=("en",)) == []
    partner_feed = store["site"].url("partenaire.xml", alt=True)
    assert set(find(store, "Daesh", feed_urls=(partner_feed,))) <= {store["partner"],
                                                                    store["site"].url("partenaire/depeche-syrie-coalition-maj.html", alt=True)}
    both = find(store, "Daesh déminage")
    originals = find(store, "Daesh déminage", originals=True)
    copies = query(store["settings"].database, "SELECT url FROM articles WHERE duplicate_of IS NOT NULL")
    assert copies, "the partner runs a copy of the seed"
    assert {c for (c,) in copies} & set(both)
    assert not {c for (c,) in copies} & set(originals)


def test_cli_json_has_the_documented_keys_and_a_highlighted_snippet(store, capsys):
    code, out, _ = cli(capsys, "search", "--config", store["config"], "--format", "json", "--feed", "tag:echo",
                       "grèves OR déminage")
    assert code == 0
    hits = json.loads(out)
    assert [h["url"] for h in hits] == [store["seed"]], "tag:echo holds the seed's feed, not the wire's"
    assert set(hits[0]) == {"id", "url", "title", "published_at", "feed_url", "language", "score", "snippet"}
    assert "**déminage**" in hits[0]["snippet"] and hits[0]["language"] == "fr"
    assert hits[0]["published_at"].startswith("2019-11-24")


def test_cli_query_error_exits_2_with_the_column(store, capsys):
    code, out, err = cli(capsys, "search", "--config", store["config"], "(grève")
    assert code == 2 and out == ""
    assert err.strip() == "query: unbalanced parenthesis at column 1"


def test_reindex_rebuilds_a_lost_index(store, capsys):
    lost = index_path(store["settings"].database)
    shutil.rmtree(lost)
    code, _, err = cli(capsys, "search", "--config", store["config"], "grève")
    assert code == 1 and "newsmon search --reindex" in err
    code, out, err = cli(capsys, "search", "--config", store["config"], "--reindex", "--format", "json", "grève")
    assert code == 0 and "search index rebuilt: 8 articles" in err, err
    assert [h["url"] for h in json.loads(out)] == ["https://wire.example/fr/greves-cheminots"]
    assert SearchIndex.open_reader(lost).searcher().num_docs == 8


KILLER = """
import os, signal, sys
from pathlib import Path
from flows.config import load_settings
from flows.persist import open_store, prepare, store_articles
from ingest.archive import article_from_record
from datetime import datetime, timezone
settings = load_settings(sys.argv[1])
store = open_store(settings.database, settings.dedup)
article, _ = article_from_record({"url": "https://wire.example/en/late", "title": "Late news",
    "text": "A ferry strike closed the harbour at dawn " * 20, "language": "en"}, datetime.now(timezone.utc))
# Die the hard way right after the lake commit, before the search index commits the batch.
store.search.commit = lambda: os.kill(os.getpid(), signal.SIGKILL)
store_articles(store, prepare([article], settings.dedup), settings.dedup, "killed")
"""


def test_an_index_left_behind_by_a_sigkill_is_caught_up_on_the_next_open(tmp_path):
    config = tmp_path / "newsmon.toml"
    config.write_text('[storage]\ndatabase = "data/newsmon.duckdb"\n', encoding="utf-8")
    settings = load_settings(config)
    records = tmp_path / "one.jsonl"
    records.write_text(json.dumps(IMPORTED[0]) + "\n", encoding="utf-8")
    import_files(settings, [records], workers=1)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(config)], cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == -9
    assert query(settings.database, "SELECT count(*) FROM articles") == [(2,)], "the lake committed the batch"
    assert search(settings.database, "ferry") == [], "the index did not"

    from flows.persist import open_store

    open_store(settings.database, settings.dedup).close()  # what the next run or import does first
    assert urls(search(settings.database, "ferry")) == ["https://wire.example/en/late"]
    index = SearchIndex.open_reader(index_path(settings.database))
    assert index.searcher().num_docs == 2, "caught up once, nothing indexed twice"


def test_export_reads_back_in_duckdb(store, capsys, tmp_path):
    for name in ("all.parquet", "all.csv", "all.jsonl"):
        code, _, err = cli(capsys, "export", "--config", store["config"], str(tmp_path / name))
        assert code == 0 and err.strip() == f"export: 8 article(s) to {tmp_path / name}"
    reader = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}
    for suffix, function in reader.items():
        rows = duckdb.sql(f"SELECT url, language, text FROM {function}('{tmp_path}/all.{suffix}') "
                          f"WHERE url = 'https://wire.example/fr/greves-cheminots'").fetchall()
        assert len(rows) == 1 and rows[0][1] == "fr" and "cheminots ont reconduit" in rows[0][2]
    columns = [c[0] for c in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{tmp_path}/all.parquet')").fetchall()]
    from storage.exports import EXPORT_COLUMNS

    assert tuple(columns) == EXPORT_COLUMNS
    code, _, _ = cli(capsys, "export", "--config", store["config"], "--since", "2024-06-02", "--originals",
                     "--query", "port OR grève", str(tmp_path / "some.parquet"))
    got = duckdb.sql(f"SELECT url FROM read_parquet('{tmp_path}/some.parquet')").fetchall()
    assert got == [("https://wire.example/fr/greves-cheminots",), ("https://wire.example/en/port-traffic",)]


def test_export_refuses_an_unknown_format(store, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--config", store["config"], str(tmp_path / "x.xlsx")])
    assert exit_.value.code == 2 and "use a .parquet, .csv or .jsonl file name" in capsys.readouterr().err


def test_stories_show_who_else_ran_it(store, capsys):
    code, out, _ = cli(capsys, "stories", "--config", store["config"], "--since", "3000d", "--min-sources", "2",
                       "--format", "json")
    assert code == 0
    stories = json.loads(out)
    assert len(stories) == 1, "the seed and the partner's copy: the only story two outlets ran"
    assert stories[0]["outlets"] == 2 and stories[0]["also_reported_by"] == ["localhost"]
    assert stories[0]["outlet"] == "127.0.0.1" and stories[0]["url"] == store["seed"]
    code, out, _ = cli(capsys, "stories", "--config", store["config"], "--since", "3000d")
    assert "localhost" in out and "(6 rows)" in out, "every story (the import's four, the Lyon budget, Syria)"


def test_alert_feed_is_valid_atom_and_written_after_each_run(store, capsys):
    code, out, _ = cli(capsys, "alerts", "feed", "--config", store["config"], "syria")
    assert code == 0
    parsed = feedparser.parse(out.encode())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10" and parsed.feed.title == "newsmon alert: syria"
    assert [e.link for e in parsed.entries] == [store["seed"]]
    assert parsed.entries[0].id.startswith("urn:newsmon:alert:syria:") and "Deir" in parsed.entries[0].summary
    written = feedparser.parse((store["root"] / "feeds" / "syria.xml").read_bytes())
    assert [e.id for e in written.entries] == [e.id for e in parsed.entries]


def test_unknown_alert_feed_and_bad_feed_config_exit_2(store, capsys, tmp_path):
    code, _, err = cli(capsys, "alerts", "feed", "--config", store["config"], "nope")
    assert code == 2 and err.strip().endswith("alerts: no alert named 'nope' (defined: syria)")
    bad = tmp_path / "bad.toml"
    bad.write_text("[alert_feeds]\nentries = 0\n", encoding="utf-8")
    code, _, err = cli(capsys, "check", "--config", str(bad))
    assert code == 2 and err.strip() == f"{bad}: alert_feeds.entries: must be between 1 and 10_000, got 0"
