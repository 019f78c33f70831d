"""Whole ingest cycles against scripted sites on 127.0.0.1: every way a feed or page can fail.

Each case checks what was stored (fetch_log, feeds, articles) and that the rest of the run
was stored too: one bad site never costs the others their articles.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import pytest

from storage.db import open_reader

from flows.fixture_site import SITE_DIR
from tests.conftest import FIXTURES
from tests.helpers import query as query_db
from tests.helpers import run_flow
from tests.loopback import LoopbackHTTPServer, Request, Response


SEED_PATH = "/actualites/2019/11/syrie-deminage-daesh-deir-ez-zor.html"
BUDGET_PATH = "/actualites/2019/11/budget-municipal-lyon.html"
HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS_TYPE = {"Content-Type": "application/rss+xml; charset=utf-8"}
PUBLISHED = "Mon, 02 Mar 2026 09:00:00 +0000"


# ---------------------------------------------------------------------------- helpers


def rss(title: str, items: list[tuple[str, str, str]]) -> bytes:
    """An RSS 2.0 document; items are (link, title, summary)."""
    body = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f"<guid isPermaLink=\"false\">{escape(link)}</guid><pubDate>{PUBLISHED}</pubDate>"
        f"<description>{escape(summary)}</description></item>"
        for link, t, summary in items)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
            f"<link>http://example.org/</link><description>test feed</description>{body}</channel></rss>"
            ).encode("utf-8")


def article_page(title: str, paragraphs: list[str], head: str = "", lang: str = "fr") -> str:
    """A news page with site chrome around an <article> holding `paragraphs`."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html lang=\"{lang}\"><head>{head}<title>{title}</title></head><body>"
            f"<header><nav><a href=\"/\">Accueil</a> <a href=\"/monde/\">Monde</a></nav></header>"
            f"<main><article><h1>{title}</h1>{body}</article></main>"
            f"<footer><p>Mentions légales · Contact</p></footer></body></html>")


def story(seed: str, words: int = 90) -> list[str]:
    """Three paragraphs of text unique to `seed`, so no two pages look like copies."""
    rng = random.Random(seed)
    vocab = ("conseil maire budget école route rivière port usine grève accord vote marché prix récolte "
             "tribunal juge enquête hôpital médecin train gare pont quartier festival musée théâtre stade "
             "équipe saison record pluie orage neige chaleur forêt incendie pompier police témoin ministre "
             "député sénat loi réforme impôt salaire emploi entreprise banque crédit loyer logement").split()
    return [f"{seed.capitalize()} : " + " ".join(rng.choice(vocab) for _ in range(words // 3)) + "."
            for _ in range(3)]


def fixture_page(path: str, base: str) -> bytes:
    """A saved fixture-site page with its {{BASE}} placeholders pointing at `base`."""
    text = (SITE_DIR / path.lstrip("/")).read_text(encoding="utf-8")
    return text.replace("{{ALT_BASE}}", base).replace("{{BASE}}", base).encode("utf-8")


def serve_stories(server: LoopbackHTTPServer, feed_path: str, paths: list[str], **headers: str) -> str:
    """Route an RSS feed listing `paths` and a page of its own at each path; returns the feed URL."""
    items = [(server.url(p), f"Titre {p}", f"Résumé de {p}.") for p in paths]
    server.route(feed_path, Response(200, rss(feed_path, items), {**RSS_TYPE, **headers}))
    for p in paths:
        server.route(p, Response(200, article_page(f"Titre {p}", story(p)).encode(), HTML))
    return server.url(feed_path)


def toml_value(value) -> str:
    """TOML for a string, number, boolean or list of strings (JSON strings are valid TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def write_config(directory: Path, feeds: list[dict], fetch: dict | None = None) -> str:
    """newsmon.toml in `directory` with a [fetch] table (loopback allowed unless overridden)."""
    fetch = {"allow_private_networks": True, "timeout_s": 5, "retries": 0, "backoff_s": 0.05, **(fetch or {})}
    lines = ["[storage]", 'database = "data/newsmon.duckdb"', "", "[fetch]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in fetch.items()]
    for feed in feeds:
        lines += ["", "[[feeds]]"] + [f"{k} = {toml_value(v)}" for k, v in feed.items()]
    path = directory / "newsmon.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def db_of(config: str) -> Path:
    return Path(config).parent / "data" / "newsmon.duckdb"


def query(config: str, sql: str, params=()) -> list[tuple]:
    return query_db(db_of(config), sql, params)


def article(config: str, source_url: str) -> dict | None:
    """The stored article whose feed link was `source_url`, as a dict."""
    con = open_reader(db_of(config))
    try:
        cur = con.execute("SELECT * FROM articles WHERE source_url = ?", [source_url])
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))
    finally:
        con.close()


def page_log(config: str, url: str) -> list[tuple]:
    """(status, outcome, error) of every article attempt on `url`, oldest first."""
    return query(config, "SELECT status, outcome, error FROM fetch_log WHERE kind = 'article' AND url = ? "
                         "ORDER BY \"at\"", [url])


def feed_row(config: str, url: str) -> dict:
    con = open_reader(db_of(config))
    try:
        cur = con.execute("SELECT * FROM feeds WHERE url = ?", [url])
        return dict(zip([d[0] for d in cur.description], cur.fetchone()))
    finally:
        con.close()


def no_mojibake(text: str) -> bool:
    """No UTF-8-read-as-Latin-1 pairs, no replacement characters, no C1 controls."""
    return not any(s in text for s in ("Ã", "Â", "â€", "\ufffd")) and not any(0x80 <= ord(c) <= 0x9F for c in text)


# ---------------------------------------------------------------------------- one run, every page failure

LATIN1_TEXT = ("Le député de Besançon a présenté à l'Assemblée un rapport très détaillé sur la forêt "
               "jurassienne : « Ça ne peut plus durer », a-t-il déclaré, évoquant les épicéas déjà morts.")
CP1252_TEXT = ("Le cœur du dossier : un coût de 12 € par habitant… « L’œuvre d’une génération », "
               "s’est félicitée la maire, qui évoque “une réussite” pour l’été prochain.")
BOM_TEXT = ("Zürich et Genève : l’accord franco-suisse sur les frontaliers prévoit une hausse "
            "des salaires de 3 % ; « c’est historique », juge le négociateur côté français.")


@dataclass
class Gauntlet:
    """A run over one site that fails in every way at once, plus healthy pages and feeds."""

    config: str
    server: LoopbackHTTPServer
    summary: object
    links: dict[str, str]  # case -> the link the feed gave
    summaries: dict[str, str]  # case -> its feed summary
    started: datetime

    def url(self, path: str) -> str:
        return self.server.url(path)

    def assert_rest_stored(self) -> None:
        """The healthy pages and the healthy feed of the same run made it into the database."""
        good = article(self.config, self.links["good"])
        assert good is not None and good["extraction"] == "trafilatura"
        assert "Deir ez-Zor" in good["text"]
        entity_feed = query(self.config, "SELECT count(*) FROM articles WHERE feed_url = ? AND extraction = "
                                         "'trafilatura'", [self.url("/feeds/entities.xml")])
        assert entity_feed == [(2,)]
        assert query(self.config, "SELECT status FROM runs") == [("completed",)]


PAGE_CASES = {  # case -> path of the feed link (under 127.0.0.1 unless it starts with "//localhost")
    "good": SEED_PATH,
    "slow": "//localhost/slow.html",
    "endless": "/endless.html",
    "huge": "/huge.html",
    "pdf": "/rapport-annuel.pdf",
    "latin1": "/latin1.html",
    "cp1252": "/cp1252.html",
    "bom": "/bom.html",
    "chain": "/chain/start",
    "loop": "/loop/a",
    "flaky": "/flaky.html",
    "ratelimited": "/ratelimited.html",
    "robots": "/private/secret.html",
}


def _endless(_request: Request) -> Response:
    def chunks():
        yield b"<!DOCTYPE html><html><head><title>stream</title></head><body>"
        while True:  # until the client hangs up
            yield b"<p>" + b"encore " * 10_000 + b"</p>"  # 70 KB: the cap is reached in a few writes
    return Response(200, chunks(), HTML)


def _gauntlet_routes(server: LoopbackHTTPServer) -> None:
    page = lambda seed: Response(200, article_page(seed.capitalize(), story(seed)).encode(), HTML)  # noqa: E731
    server.route("/robots.txt", Response(200, b"User-agent: *\nDisallow: /private/\n", {"Content-Type": "text/plain"}))
    server.route(SEED_PATH, Response(200, fixture_page(SEED_PATH, server.base), HTML))
    server.route(BUDGET_PATH, Response(200, fixture_page(BUDGET_PATH, server.base), HTML))
    server.route("/slow.html", Response(200, article_page("Lent", story("lent")).encode(), HTML, delay_s=8))
    server.route("/endless.html", _endless)
    server.route("/huge.html", Response(200, b"<!DOCTYPE html><html><body><p>" + b"x" * 400_000 + b"</p></body></html>",
                                        HTML))
    server.route("/rapport-annuel.pdf", Response(200, b"%PDF-1.7\n" + b"\x00\x01binary" * 100,
                                                 {"Content-Type": "application/pdf"}))
    server.route("/latin1.html", Response(200, article_page(
        "Forêt jurassienne", [LATIN1_TEXT] * 2 + story("forêt"),
        head='<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">').encode("latin-1"),
        {"Content-Type": "text/html"}))
    server.route("/cp1252.html", Response(200, article_page(
        "L’œuvre d’une génération", [CP1252_TEXT] * 2 + story("œuvre"),
        head='<meta charset="windows-1252">').encode("cp1252"), {"Content-Type": "text/html"}))
    server.route("/bom.html", Response(200, "\ufeff".encode() + article_page(
        "Frontaliers", [BOM_TEXT] * 2 + story("frontaliers")).encode("utf-8"), {"Content-Type": "text/html"}))
    server.route("/chain/start", Response(301, b"", {"Location": "/chain/middle"}))
    server.route("/chain/middle", Response(302, b"", {"Location": BUDGET_PATH + "?utm_source=rss&utm_medium=feed"}))
    server.route("/loop/a", Response(302, b"", {"Location": "/loop/b"}))
    server.route("/loop/b", Response(301, b"", {"Location": "/loop/a"}))
    server.route("/flaky.html", [Response(500, b"oops"), Response(500, b"oops"), page("instable")])
    server.route("/ratelimited.html", [Response(429, b"slow down", {"Retry-After": "1"}), page("limité")])
    server.route("/private/secret.html", page("secret"))
    server.route("/entities/one.html", page("entité une"))
    server.route("/entities/two.html", page("entité deux"))


@pytest.fixture(scope="module")
def gauntlet(tmp_path_factory) -> Gauntlet:
    directory = tmp_path_factory.mktemp("gauntlet")
    with LoopbackHTTPServer() as server:
        _gauntlet_routes(server)
        links = {case: (f"http://localhost:{server.port}{p[len('//localhost'):]}" if p.startswith("//localhost")
                        else server.url(p)) for case, p in PAGE_CASES.items()}
        summaries = {case: f"Résumé du flux pour le cas « {case} » : l’essentiel de l’article en deux phrases. "
                           f"Le lien complet est sur le site." for case in PAGE_CASES}
        server.route("/feeds/pages.xml", Response(200, rss("Cas de pages", [
            (links[c], f"Article {c}", summaries[c]) for c in PAGE_CASES]), RSS_TYPE))
        server.route("/feeds/missing.xml", Response(404, b"not found", {"Content-Type": "text/plain"}))
        server.route("/feeds/not-xml.xml", Response(200, b"<!DOCTYPE html><html><body><p>Maintenance</p></body></html>",
                                                    HTML))
        server.route("/feeds/entities.xml", Response(200, (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Caf&eacute; du commerce</title>'
            f'<item><title>Caf&eacute;&nbsp;une</title><link>{server.url("/entities/one.html")}</link>'
            "<description>Une histoire de caf&eacute;&hellip;</description></item>"
            f'<item><title>Caf&eacute;&nbsp;deux</title><link>{server.url("/entities/two.html")}</link>'
            "<description>Deux tasses de caf&eacute;&hellip;</description></item></channel></rss>").encode(),
            RSS_TYPE))
        feeds = [{"url": server.url(p)} for p in ("/feeds/pages.xml", "/feeds/missing.xml", "/feeds/not-xml.xml",
                                                  "/feeds/entities.xml")]
        config = write_config(directory, feeds, {"timeout_s": 4, "retries": 2, "max_bytes": 300_000})
        started = datetime.now(timezone.utc)
        with pytest.MonkeyPatch.context() as mp:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
                mp.delenv(name, raising=False)
            summary = run_flow(config)
        yield Gauntlet(config, server, summary, links, summaries, started)


FAILED_PAGES = {  # case -> (outcomes of its article attempts, words in the last error)
    "endless": (["too_large"], "larger than 300000 bytes"),
    "huge": (["too_large"], "larger than 300000 bytes"),
    "pdf": (["not_html"], "application/pdf"),
    "robots": (["blocked"], "robots.txt"),
}


@pytest.mark.parametrize("case", sorted(FAILED_PAGES))
def test_failed_page_keeps_the_feed_summary(gauntlet, case):
    outcomes, words = FAILED_PAGES[case]
    log = page_log(gauntlet.config, gauntlet.links[case])
    assert [row[1] for row in log] == outcomes
    assert words in log[-1][2]
    stored = article(gauntlet.config, gauntlet.links[case])
    assert stored["extraction"] == "feed_summary"
    assert stored["text"] == " ".join(gauntlet.summaries[case].split())
    assert stored["title"] == f"Article {case}"
    gauntlet.assert_rest_stored()


def test_timed_out_page_waits_for_the_next_run(gauntlet):
    """A timeout may pass: the entry waits in page_retries (README: up to 3 runs) instead of being stored now."""
    log = page_log(gauntlet.config, gauntlet.links["slow"])
    assert [row[1] for row in log] == ["timeout"] * 3 and "timed out" in log[-1][2]
    assert article(gauntlet.config, gauntlet.links["slow"]) is None
    waiting = query(gauntlet.config, "SELECT url, attempts, last_outcome, title FROM page_retries")
    assert waiting == [(gauntlet.links["slow"], 1, "timeout", "Article slow")]
    assert gauntlet.summary.pages_retry == 1
    gauntlet.assert_rest_stored()


def test_robots_disallowed_page_is_never_requested(gauntlet):
    assert gauntlet.server.hits("/private/secret.html") == []
    assert page_log(gauntlet.config, gauntlet.links["robots"])[0][0] is None  # no status: nothing was sent
    robots = query(gauntlet.config, "SELECT url, status, outcome FROM fetch_log WHERE kind = 'robots'")
    assert (gauntlet.url("/robots.txt"), 200, "ok") in robots
    assert len(gauntlet.server.hits("/robots.txt")) == 2, "once per origin: 127.0.0.1 and localhost"
    gauntlet.assert_rest_stored()


def test_pdf_status_is_logged_without_downloading_it(gauntlet):
    log = page_log(gauntlet.config, gauntlet.links["pdf"])
    assert log == [(200, "not_html", "Content-Type application/pdf")]
    assert query(gauntlet.config, "SELECT bytes FROM fetch_log WHERE url = ?", [gauntlet.links["pdf"]]) == [(0,)]
    gauntlet.assert_rest_stored()


@pytest.mark.parametrize("case, words", [
    ("latin1", ["député de Besançon", "« Ça ne peut plus durer »", "épicéas déjà morts"]),
    ("cp1252", ["Le cœur du dossier", "12 € par habitant…", "« L’œuvre d’une génération »",
                "“une réussite”", "l’été prochain"]),
    ("bom", ["Zürich et Genève", "l’accord franco-suisse", "« c’est historique »", "côté français"]),
])
def test_page_charset_is_decoded_right(gauntlet, case, words):
    stored = article(gauntlet.config, gauntlet.links[case])
    assert stored["extraction"] == "trafilatura"
    for w in words:
        assert w in stored["text"]
    assert no_mojibake(stored["text"]) and no_mojibake(stored["title"])
    assert not stored["text"].startswith("\ufeff")
    gauntlet.assert_rest_stored()


def test_redirect_chain_stores_the_final_canonical_url(gauntlet):
    stored = article(gauntlet.config, gauntlet.links["chain"])
    assert stored["url"] == gauntlet.url(BUDGET_PATH), "final hop, tracking parameters dropped"
    assert stored["extraction"] == "trafilatura" and "budget" in stored["text"]
    hops = query(gauntlet.config, "SELECT url, status, outcome FROM fetch_log WHERE kind = 'article' AND "
                                  "(url LIKE '%/chain/%' OR url LIKE '%utm_source%') ORDER BY \"at\"")
    assert [(h[1], h[2]) for h in hops] == [(301, "ok"), (302, "ok"), (200, "ok")]
    assert hops[0][0] == gauntlet.links["chain"] and "utm_source=rss" in hops[2][0]
    assert query(gauntlet.config, "SELECT count(*) FROM articles WHERE url = ?", [gauntlet.url(BUDGET_PATH)]) == [(1,)]
    gauntlet.assert_rest_stored()


def test_redirect_loop_is_an_http_error(gauntlet):
    log = query(gauntlet.config, "SELECT url, status, outcome, error FROM fetch_log WHERE url LIKE '%/loop/%' "
                                 "ORDER BY \"at\"")
    assert [(r[1], r[2]) for r in log] == [(302, "ok"), (301, "http_error")]
    assert log[-1][3].startswith("redirect loop: ") and log[-1][3].count("/loop/a") == 2
    assert len(gauntlet.server.hits("/loop/a")) == 1 and len(gauntlet.server.hits("/loop/b")) == 1
    stored = article(gauntlet.config, gauntlet.links["loop"])
    assert stored["extraction"] == "feed_summary"
    gauntlet.assert_rest_stored()


@pytest.mark.parametrize("case, statuses", [("flaky", [500, 500, 200]), ("ratelimited", [429, 200])])
def test_transient_errors_are_retried_until_the_page_is_stored(gauntlet, case, statuses):
    log = page_log(gauntlet.config, gauntlet.links[case])
    assert [r[0] for r in log] == statuses
    assert [r[1] for r in log] == ["http_error"] * (len(statuses) - 1) + ["ok"]
    stored = article(gauntlet.config, gauntlet.links[case])
    assert stored["extraction"] == "trafilatura" and stored["word_count"] > 50
    gauntlet.assert_rest_stored()


def test_missing_feed_is_recorded_and_backs_off(gauntlet):
    url = gauntlet.url("/feeds/missing.xml")
    assert query(gauntlet.config, "SELECT status, outcome, error FROM fetch_log WHERE url = ?",
                 [url]) == [(404, "http_error", "HTTP 404")]
    row = feed_row(gauntlet.config, url)
    assert (row["last_status"], row["last_outcome"], row["last_error"]) == (404, "http_error", "HTTP 404")
    assert row["consecutive_failures"] == 1 and row["last_ok_at"] is None
    assert row["next_check_at"] > datetime.now(timezone.utc)
    gauntlet.assert_rest_stored()


def test_feed_that_is_not_xml_is_a_parse_error(gauntlet):
    url = gauntlet.url("/feeds/not-xml.xml")
    log = query(gauntlet.config, "SELECT status, outcome FROM fetch_log WHERE url = ? ORDER BY outcome", [url])
    assert log == [(200, "ok"), (200, "parse_error")], "the download worked; the parser refused it"
    row = feed_row(gauntlet.config, url)
    assert row["last_outcome"] == "parse_error" and row["last_error"].startswith("parse error")
    assert row["consecutive_failures"] == 1 and row["next_check_at"] > datetime.now(timezone.utc)
    gauntlet.assert_rest_stored()


def test_feed_with_an_undefined_entity_is_still_read(gauntlet):
    url = gauntlet.url("/feeds/entities.xml")
    row = feed_row(gauntlet.config, url)
    assert (row["last_outcome"], row["last_error"], row["consecutive_failures"]) == ("ok", None, 0)
    stored = article(gauntlet.config, gauntlet.url("/entities/one.html"))
    assert stored["extraction"] == "trafilatura" and stored["feed_url"] == url
    gauntlet.assert_rest_stored()


def test_run_summary_counts_every_failure(gauntlet):
    s = gauntlet.summary
    assert (s.feeds_total, s.feeds_ok, s.feeds_failed) == (4, 2, 2)
    assert s.articles_failed == len(FAILED_PAGES) + 1  # the redirect loop too
    assert s.articles_new == len(PAGE_CASES) + 2 - 1  # the slow page waits for the next run
    failed = {gauntlet.url("/feeds/missing.xml"), gauntlet.url("/feeds/not-xml.xml")}
    assert {url for url, _ in s.failed_feeds} == failed
    gauntlet.assert_rest_stored()


# ---------------------------------------------------------------------------- runs of their own


def test_guard_blocks_a_loopback_article_link_and_keeps_the_story(tmp_path, http_server):
    inside = f"http://localhost:{http_server.port}/admin/story.html"
    other = http_server.url("/other.html")
    for path in ("/admin/story.html", "/other.html"):
        http_server.route(path, Response(200, article_page("Interne", story(path)).encode(), HTML))
    http_server.route("/feed.xml", Response(200, rss("Flux", [
        (inside, "Une histoire interne", "Le résumé de l’histoire interne reste dans la base.")]), RSS_TYPE))
    http_server.route("/other.xml", Response(200, rss("Autre", [
        (other, "Une autre histoire", "Un autre résumé, venu d’un autre flux.")]), RSS_TYPE))
    config = write_config(tmp_path, [{"url": http_server.url("/feed.xml")}, {"url": http_server.url("/other.xml")}],
                          {"allow_private_networks": False})
    summary = run_flow(config)

    log = page_log(config, inside)
    assert len(log) == 1 and log[0][0] is None and log[0][1] == "blocked"
    assert "localhost resolves to" in log[0][2] and "loopback" in log[0][2]
    robots = query(config, "SELECT outcome FROM fetch_log WHERE kind = 'robots' AND url LIKE '%localhost%'")
    assert robots == [("blocked",)], "robots.txt goes through the guard too"
    assert http_server.hits("/admin/story.html") == [] and http_server.hits("/robots.txt") == []
    stored = article(config, inside)
    assert stored["extraction"] == "feed_summary" and "histoire interne" in stored["text"]
    # Feeds come from the operator and are not guarded: both were read, and the other story is kept too.
    assert (summary.feeds_ok, summary.articles_new, summary.articles_failed) == (2, 2, 2)
    assert article(config, other)["extraction"] == "feed_summary"
    assert [r[1] for r in page_log(config, other)] == ["blocked"]


def _conditional_feed(body: bytes, etag: str):
    """A feed route that answers 304 to a request carrying its ETag."""
    def answer(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", {"ETag": etag})
        return Response(200, body, {**RSS_TYPE, "ETag": etag, "Last-Modified": "Mon, 02 Mar 2026 09:00:00 GMT"})
    return answer


def test_feed_answering_304_refetches_no_page(tmp_path, http_server):
    paths = ["/stable/a.html", "/stable/b.html"]
    stable = serve_stories(http_server, "/stable.xml", paths)
    http_server.route("/stable.xml", _conditional_feed(http_server.routes["/stable.xml"].body, '"v1"'))
    live = serve_stories(http_server, "/live.xml", ["/live/1.html"])
    config = write_config(tmp_path, [{"url": stable}, {"url": live}])
    run_flow(config)
    assert [len(http_server.hits(p)) for p in paths] == [1, 1]

    serve_stories(http_server, "/live.xml", ["/live/1.html", "/live/2.html"])
    summary = run_flow(config)

    assert http_server.hits("/stable.xml")[-1].headers["if-none-match"] == '"v1"'
    assert (summary.feeds_not_modified, summary.feeds_ok, summary.articles_new) == (1, 1, 1)
    assert [len(http_server.hits(p)) for p in paths] == [1, 1], "no page of the unchanged feed was requested again"
    second_run = query(config, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")[0][0]
    assert query(config, "SELECT status, outcome FROM fetch_log WHERE run_id = ? AND url = ?",
                 [second_run, stable]) == [(304, "not_modified")]
    row = feed_row(config, stable)
    assert (row["last_status"], row["last_outcome"], row["etag"], row["consecutive_failures"]) == \
        (304, "not_modified", '"v1"', 0)
    assert query(config, "SELECT count(*) FROM articles WHERE feed_url = ?", [stable]) == [(2,)]
    assert article(config, http_server.url("/live/2.html"))["extraction"] == "trafilatura"


def test_failing_feed_backs_off_and_the_next_run_skips_it(tmp_path, http_server):
    http_server.route("/down.xml", Response(503, b"maintenance", {"Content-Type": "text/plain"}))
    down_url = http_server.url("/down.xml")
    up = serve_stories(http_server, "/up.xml", ["/up/1.html"])
    config = write_config(tmp_path, [{"url": down_url}, {"url": up}])
    first = run_flow(config)
    assert (first.feeds_failed, first.feeds_ok, first.articles_new) == (1, 1, 1)
    down = feed_row(config, down_url)
    assert (down["last_status"], down["last_outcome"], down["last_error"]) == (503, "http_error", "HTTP 503")
    assert down["consecutive_failures"] == 1
    assert down["next_check_at"] > datetime.now(timezone.utc) > down["last_fetched_at"]

    serve_stories(http_server, "/up.xml", ["/up/1.html", "/up/2.html"])
    second = run_flow(config)

    assert second.feeds_backing_off == 1 and second.feeds_total == 1 and second.articles_new == 1
    assert len(http_server.hits("/down.xml")) == 1, "the failing feed is not contacted while it backs off"
    assert feed_row(config, down_url)["next_check_at"] == down["next_check_at"]
    assert article(config, http_server.url("/up/2.html"))["extraction"] == "trafilatura"


# ---------------------------------------------------------------------------- feed sources


def test_opml_source_feeds_are_read_with_folder_tags(tmp_path, http_server):
    europe = serve_stories(http_server, "/europe.xml", ["/europe/1.html", "/europe/2.html"])
    marches = serve_stories(http_server, "/marches.xml", ["/marches/1.html", "/marches/2.html"])
    (tmp_path / "subs.opml").write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Abonnements</title></head><body>
  <outline text="Monde">
    <outline text="Europe"><outline type="rss" text="Fil Europe" xmlUrl="{europe}"/></outline>
  </outline>
  <outline text="Économie">
    <outline type="rss" text="Marchés" title="Les marchés" category="/Bourse,Finance" xmlUrl="{marches}"/>
  </outline>
</body></opml>""", encoding="utf-8")
    config = write_config(tmp_path, [{"opml": "subs.opml", "tags": ["opml"]}])
    summary = run_flow(config)

    assert summary.feeds_ok == 2 and summary.articles_new == 4 and summary.articles_failed == 0
    europe_row, marches_row = feed_row(config, europe), feed_row(config, marches)
    assert (europe_row["name"], europe_row["tags"]) == ("Fil Europe", ["opml", "Monde", "Europe"])
    assert (marches_row["name"], marches_row["tags"]) == ("Les marchés", ["opml", "Économie", "Bourse", "Finance"])
    assert query(config, "SELECT count(*) FROM articles WHERE extraction = 'trafilatura'") == [(4,)]


def test_site_source_reads_the_feeds_its_home_page_advertises(tmp_path, fixture_site, http_server):
    http_server.route("/", Response(200, b"<!DOCTYPE html><html><head><title>Sans flux</title></head>"
                                         b"<body><p>Pas de flux ici.</p></body></html>", HTML))
    config = write_config(tmp_path, [{"site": fixture_site.base + "/", "name": "Écho", "tags": ["lyon"]},
                                     {"site": http_server.url("/")}])
    summary = run_flow(config)

    assert query(config, "SELECT url, name, tags FROM feeds ORDER BY url") == [
        (fixture_site.url("atom.xml"), "Écho", ["lyon"]), (fixture_site.url("rss.xml"), "Écho", ["lyon"])]
    assert summary.feeds_ok == 2 and summary.articles_new >= 2
    seed = query(config, "SELECT extraction, text FROM articles WHERE url = ?", [fixture_site.url(SEED_PATH)])
    assert seed[0][0] == "trafilatura" and "Deir ez-Zor" in seed[0][1]
    assert query(config, "SELECT url FROM articles WHERE url = ?", [fixture_site.url(BUDGET_PATH)]) != []
    assert len(http_server.hits("/")) == 1, "the site without a feed was looked at and skipped"


# ---------------------------------------------------------------------------- politeness under load

STRESS_FEEDS, STRESS_ENTRIES = 40, 20  # 800 pages: the limit holds over 32 store batches


def _stress_page(request: Request) -> Response:
    """A small article page of its own for every path."""
    path = request.path.split("?")[0]
    return Response(200, article_page(f"Article {path}", story(path, words=60)).encode(), HTML)


def _stress_feed(server: LoopbackHTTPServer, n: int) -> Response:
    items = [(server.url(f"/a/{n}/{i}.html"), f"Article {n}-{i}", f"Résumé {n}-{i}.") for i in range(STRESS_ENTRIES)]
    # The server closes the feed connection itself, as the client does, so its count of open
    # connections drops with the response instead of whenever its thread next reads the socket.
    return Response(200, rss(f"Flux {n}", items), {**RSS_TYPE, "Connection": "close"})


def test_per_host_limit_holds_for_a_whole_cycle_on_one_host(tmp_path, http_server):
    server = http_server
    # A robots.txt body is read to the end, so its connection stays in the pool for the pages.
    server.route("/robots.txt", Response(200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"}))
    for n in range(STRESS_FEEDS):
        server.route(f"/f/{n}.xml", _stress_feed(server, n))
        for i in range(STRESS_ENTRIES):
            server.route(f"/a/{n}/{i}.html", _stress_page)
    config = write_config(tmp_path, [{"url": server.url(f"/f/{n}.xml")} for n in range(STRESS_FEEDS)],
                          {"per_host": 2, "concurrency": 16, "timeout_s": 30})
    summary = run_flow(config)

    total = STRESS_FEEDS * STRESS_ENTRIES
    assert summary.feeds_ok == STRESS_FEEDS and summary.articles_new == total and summary.articles_failed == 0
    assert query(config, "SELECT count(*), count(*) FILTER (WHERE extraction = 'trafilatura') FROM articles") == \
        [(total, total)]
    assert query(config, "SELECT count(*) FROM fetch_log WHERE outcome <> 'ok'") == [(0,)]
    assert len(server.requests) == STRESS_FEEDS + total + 1
    assert 1 <= server.max_open_connections <= 2
