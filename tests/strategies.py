"""Hypothesis strategies for what reaches newsmon from outside: config files, alert rules, feed bytes,
article pages and URLs.

Real inputs seed them: the feeds and pages of the benchmark corpus beside the checkout
(../shared/corpus), else the bundled demo site; the TOML examples of README.md and docs/. The
property tests (tests/test_properties.py) and the fuzzer (bench/fuzz.py) both draw from here.
"""
from __future__ import annotations

import copy
import functools
import json
import re
import tomllib
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from hypothesis import strategies as st

from flows.fixture_site import SITE_DIR
from tests.helpers import newsmon_config

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
FEED_URL = "http://news.test/feed.xml"
PAGE_URL = "http://news.test/2024/06/article.html"

# ---------------------------------------------------------------------------------------------- seeds


class Seeds(tuple):
    """Seed documents; a strategy built on them shows their count, not megabytes of bytes, in its repr."""

    def __repr__(self) -> str:
        return f"Seeds({len(self)} documents)"


@functools.lru_cache(maxsize=None)
def feed_seeds(max_bytes: int) -> Seeds:
    """Real feeds of at most `max_bytes` (corpus first, else the demo site's), in name order."""
    files = sorted((CORPUS / "feeds").glob("*.xml")) or sorted(SITE_DIR.glob("*.xml"))
    return Seeds(_site_text(p) for p in files if p.stat().st_size <= max_bytes)


@functools.lru_cache(maxsize=None)
def page_seeds(max_bytes: int) -> Seeds:
    """Real article pages of at most `max_bytes` (corpus first, else the demo site's), in name order."""
    files = sorted((CORPUS / "articles").glob("*.html")) or sorted(SITE_DIR.rglob("*.html"))
    return Seeds(_site_text(p) for p in files if p.stat().st_size <= max_bytes)


def _site_text(path: Path) -> bytes:
    # Demo site files carry {{BASE}} placeholders that its server fills in; corpus files have none.
    return path.read_bytes().replace(b"{{ALT_BASE}}", b"http://partner.test").replace(b"{{BASE}}", b"http://news.test")


# ---------------------------------------------------------------------------------------------- bytes

# Fragments that break parsers in known ways: markup edges, entities, encodings and byte-order marks,
# the XML bomb's first step, and links, dates and language tags that are not what they claim.
HOSTILE_FRAGMENTS = (
    b"<", b">", b"&", b"&amp;", b"&#0;", b"&#xD800;", b"&#x110000;", b"&nbsp;", b"]]>", b"<![CDATA[", b"<!--",
    b"-->", b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>', b"&b;", b"\x00", b"\xff\xfe",
    b"\xfe\xff", b"\xef\xbb\xbf", b"\x80\x81\xfe", b"</item>", b"<item>", b"</entry>", b"<entry>",
    b"<link>http://[::1/x</link>", b"<link>http://[bad/</link>", b'<link href="javascript:alert(1)"/>',
    b"<link>//example.org/a</link>", b"<guid isPermaLink='true'>http://\xef\xbc\x83/</guid>",
    b"<pubDate>Mon, 99 Foo 99999 99:99:99 +9999</pubDate>", b"<updated>0000-00-00T00:00:00Z</updated>",
    b"<published>9999-12-31T23:59:59-23:59</published>", b"<script>", b"</script>", b"<style>", b"</html>",
    b"<link rel=canonical href='http://[x/'>", b"<meta property='og:url' content='http://\xef\xbc\x83/'>",
    b'<meta charset="utf-16">', b'<meta charset="x-bogus">', b"<html lang='\x00-'>", b"<html lang='zz-ZZ'>",
    b'<?xml version="1.0" encoding="utf-32"?>', b'<?xml version="1.0" encoding="bogus"?>',
    b"<time datetime='2024-02-30T25:61'>", b'<meta name="date" content="31/31/31">',
    b"<p>" + "Dépêche d'agence sur la situation à Deir ez-Zor. ".encode() * 8 + b"</p>",
)
ENCODING_NAMES = (b"utf-8", b"utf-16", b"utf-32", b"iso-8859-1", b"windows-1251", b"big5", b"ascii", b"utf-7",
                  b"cp037", b"x-unknown", b"")
_DECLARED = re.compile(rb"(encoding|charset)\s*=\s*[\"']?([A-Za-z0-9_.:-]*)", re.I)


@st.composite
def mutated_bytes(draw, seeds: tuple[bytes, ...], max_mutations: int = 4) -> bytes:
    """A seed document with a few edits: cuts, deletions, duplicated slices, random or hostile bytes."""
    data = bytearray(seeds[draw(st.integers(0, len(seeds) - 1))])  # an index: sampled_from shows every seed in its repr
    for _ in range(draw(st.integers(0, max_mutations))):
        kind = draw(st.sampled_from(("truncate", "delete", "insert", "fragment", "duplicate", "flip", "encoding")))
        at = draw(st.integers(0, len(data)))
        span = draw(st.integers(1, 256))
        if kind == "truncate":
            del data[at:]
        elif kind == "delete":
            del data[at:at + span]
        elif kind == "insert":
            data[at:at] = draw(st.binary(max_size=32))
        elif kind == "fragment":
            data[at:at] = draw(st.sampled_from(HOSTILE_FRAGMENTS))
        elif kind == "duplicate":
            data[at:at] = data[draw(st.integers(0, len(data))):][:span]
        elif kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "encoding":
            name = draw(st.sampled_from(ENCODING_NAMES))
            data = bytearray(_DECLARED.sub(lambda m: m.group(1) + b'="' + name, bytes(data), count=1))
    return bytes(data)


# ---------------------------------------------------------------------------------------------- URLs

_TRACKERS = ("utm_source", "utm_medium", "utm_campaign", "fbclid", "gclid")


def _label() -> st.SearchStrategy[str]:
    return st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=10).map(lambda t: t.strip("-") or "a")


def hosts() -> st.SearchStrategy[str]:
    """Host names as links carry them: domains (some upper-case or IDN), IPv4 and IPv6 literals."""
    domain = st.lists(_label(), min_size=1, max_size=3).map(lambda labels: ".".join(labels + ["test"]))
    return st.one_of(domain, domain.map(str.upper), st.sampled_from(("bücher.test", "xn--bcher-kva.test")),
                     st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]"))


_PATH_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def http_urls(draw) -> str:
    """Well-formed absolute http(s) URLs: any case of scheme, ports, odd paths, tracking parameters, fragments."""
    scheme = draw(st.sampled_from(("http", "https", "HTTP", "HtTpS")))
    host = draw(hosts())
    port = draw(st.one_of(st.just(""), st.sampled_from((":80", ":443")), st.integers(1, 65535).map(lambda p: f":{p}")))
    segments = draw(st.lists(st.one_of(_label(), _PATH_TEXT.map(_percent)), max_size=4))
    params = draw(st.lists(st.tuples(st.one_of(st.sampled_from(_TRACKERS), _label()), _PATH_TEXT.map(_percent)),
                           max_size=4))
    query = "?" + "&".join(f"{k}={v}" for k, v in params) if params else ""
    fragment = draw(st.one_of(st.just(""), _label().map(lambda f: "#" + f)))
    return f"{scheme}://{host}{port}/{'/'.join(segments)}{query}{fragment}"


def _percent(text: str) -> str:
    return quote(text, safe="")


# URL punctuation, whitespace, a NUL, characters NFKC maps onto delimiters ('＃'), odd escapes, bracketed hosts.
_URL_PIECES = [*":/?#[]@!$&'()*+,;=%-._~ \t\n\\", "[::1]", "[v1.x]", "é", "\x00", "＃", "ａ", "a", "1", "%zz", "%41",
               "%2F", "..", "utm_source=x"]


def url_like_text() -> st.SearchStrategy[str]:
    """A scheme-like start, then URL punctuation and odd characters: what a broken feed or page puts in a link."""
    start = st.sampled_from(("", "http://", "https://", "HTTP://", "//", "ftp://", "javascript:", "mailto:", "http:"))
    rest = st.lists(st.sampled_from(_URL_PIECES), max_size=16).map("".join)
    return st.tuples(start, rest).map("".join)


def any_urls() -> st.SearchStrategy[str]:
    """Anything that may arrive where newsmon expects a URL."""
    return st.one_of(http_urls(), url_like_text(), st.text(max_size=40))


# ---------------------------------------------------------------------------------------------- rules

_RULE_WORD = st.text(st.characters(categories=("Ll", "Lu", "Nd"), codec="utf-8"), min_size=1, max_size=8)
# Distances as people write them, and those no index can hold: beyond 32 and 64 bits, and digit strings
# longer than int() reads (4,300 digits; built by a map so that the strategy's repr stays short).
_DISTANCES = st.one_of(st.integers(0, 50).map(str), st.integers(2**31, 2**70).map(str),
                       st.integers(4301, 5000).map(lambda n: "9" * n))


def rule_terms() -> st.SearchStrategy[str]:
    """A word, a prefix, a phrase, maybe under a field scope."""
    plain = st.one_of(_RULE_WORD, _RULE_WORD.map(lambda w: w + "*"),
                      st.lists(_RULE_WORD, min_size=1, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"'))
    return st.one_of(plain, st.tuples(st.sampled_from(("title:", "text:", "TITLE:", "url:")), plain).map("".join))


def rule_expressions() -> st.SearchStrategy[str]:
    """Rules that follow the grammar (alerts/query.py), nested up to a few levels."""
    near = st.tuples(rule_terms(), _DISTANCES, rule_terms()).map(lambda t: f"{t[0]} NEAR/{t[1]} {t[2]}")
    return st.recursive(st.one_of(rule_terms(), near), lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from((" AND ", " OR ", " ", " AND NOT ")), inner).map("".join),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"NOT {e}"),
        st.tuples(st.sampled_from(("title:", "text:")), inner).map(lambda t: f"{t[0]}({t[1]})"),
    ), max_leaves=8)


def rule_tokens() -> st.SearchStrategy[str]:
    """One piece of a rule: a term, an operator, a bracket, a quote, or noise."""
    return st.one_of(rule_terms(), st.sampled_from(("AND", "OR", "NOT", "NEAR", "NEAR/x", "(", ")", "title:(",
                                                    "text:", '"', "*")),
                     _DISTANCES.map(lambda d: "NEAR/" + d), st.text(max_size=4))


@st.composite
def rule_soups(draw) -> str:
    """Tokens of the rule language in any order, joined by spaces or by nothing."""
    tokens = draw(st.lists(rule_tokens(), min_size=1, max_size=12))
    separators = draw(st.lists(st.sampled_from((" ", " ", "  ", "", "\t")), min_size=len(tokens), max_size=len(tokens)))
    return "".join(s + t for s, t in zip(separators, tokens)).strip()


def rule_texts() -> st.SearchStrategy[str]:
    """Rule text: mostly grammatical rules, else token soup or any text."""
    return st.one_of(rule_expressions(), rule_expressions(), rule_soups(), st.text(max_size=40))


# ---------------------------------------------------------------------------------------------- feeds

_XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co", "Cn")), max_size=30)
_DATES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31),
                      timezones=st.sampled_from((timezone.utc, None)))


@st.composite
def generated_feeds(draw) -> tuple[bytes, list[dict]]:
    """A well-formed RSS 2.0 or Atom feed and the items it holds (link, title, published)."""
    items = draw(st.lists(st.fixed_dictionaries({"link": http_urls(), "title": _XML_TEXT,
                                                 "published": _DATES.map(lambda d: d.replace(microsecond=0))}),
                          max_size=6))
    # Declared, as feeds in UTF-16 do: feedparser reads no UTF-16 document (BOM or not) without a declaration.
    encoding = draw(st.sampled_from(("utf-8", "utf-16", "iso-8859-1")))
    items = [i for i in items if _encodable(i["title"], encoding)]
    head = f'<?xml version="1.0" encoding="{encoding}"?>'
    return (head + (_atom(items) if draw(st.booleans()) else _rss(items))).encode(encoding), items


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
        return True
    except UnicodeEncodeError:
        return False


def _rss(items: list[dict]) -> str:
    entries = "".join(f"<item><title>{escape(i['title'])}</title><link>{escape(i['link'])}</link>"
                      f"<pubDate>{format_datetime(aware(i['published']))}</pubDate></item>" for i in items)
    return f'<rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'


def _atom(items: list[dict]) -> str:
    entries = "".join(f"<entry><title>{escape(i['title'])}</title><link href={quoteattr(i['link'])}/>"
                      f"<id>urn:x:{n}</id><updated>{aware(i['published']).isoformat()}</updated></entry>"
                      for n, i in enumerate(items))
    return f'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>{entries}</feed>'


def aware(moment: datetime) -> datetime:
    """A naive time taken as UTC (what a feed without a zone means here)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def feed_bodies(max_seed_bytes: int) -> st.SearchStrategy[bytes]:
    """Feed bytes: mutated real feeds, generated feeds (maybe mutated), or arbitrary bytes."""
    generated = generated_feeds().map(lambda pair: pair[0])
    return st.one_of(mutated_bytes(feed_seeds(max_seed_bytes)), generated,
                     generated.flatmap(lambda body: mutated_bytes(Seeds((body,)))), st.binary(max_size=200))


def page_bodies(max_seed_bytes: int) -> st.SearchStrategy[bytes]:
    """Article page bytes: mutated real pages, or arbitrary bytes."""
    return st.one_of(mutated_bytes(page_seeds(max_seed_bytes)), st.binary(max_size=200))


# ---------------------------------------------------------------------------------------------- configs

_TOML_BLOCK = re.compile(r"^ *```toml\n(.*?)^ *```", re.S | re.M)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Every section and key of a full config: a seed of its own, so mutations reach every reader.
FULL_CONFIG = newsmon_config(every_key=True)


@functools.lru_cache(maxsize=None)
def seed_config_texts() -> tuple[str, ...]:
    """FULL_CONFIG and every TOML example in README.md and docs/ that parses as TOML."""
    texts = [FULL_CONFIG]
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for block in _TOML_BLOCK.findall(doc.read_text(encoding="utf-8")) if doc.is_file() else ():
            block = "\n".join(line.strip() for line in block.splitlines())  # list items indent their blocks
            try:
                tomllib.loads(block)
            except tomllib.TOMLDecodeError:
                continue
            texts.append(block)
    return tuple(texts)


@functools.lru_cache(maxsize=None)
def config_environ() -> dict[str, str]:
    """A value for every ${VAR} the seeds use: letters and digits, so redaction sees them as whole tokens."""
    names = sorted({name for text in seed_config_texts() for name in _VAR.findall(text)})
    return {name: f"Sx{name.replace('_', '')}Val7" for name in names}


def toml_text(table: dict) -> str:
    """`table` as a TOML document: one `key = value` line per top-level key, values written inline."""
    return "".join(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    # JSON escapes are TOML basic-string escapes; DEL must be escaped in TOML, not in JSON.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return _string(value) if isinstance(value, str) else str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"


_VAR_TEXT = st.from_regex(r"\$\{[A-Za-z_][A-Za-z0-9_]{0,6}\}", fullmatch=True)


def _scalar_values() -> st.SearchStrategy:
    """Values of every TOML type, biased toward the edges newsmon checks (ranges, URLs, addresses, ${VAR})."""
    env = sorted(config_environ())
    strings = st.one_of(
        st.text(max_size=20), st.sampled_from(("", " ", "0", "1d", "30m", "99999s", "digest", "daily", "webhook",
                                               "email", "apprise", "json", "slack", "postgres:host=db dbname=n",
                                               "s3://bucket/p", "/tmp", "~", "~nobody/x", "a@b", "a@b\r\nBcc: c",
                                               "* * * * *", "61 * * * *", "UTC", "Mars/Olympus", "x" * 300)),
        http_urls(), url_like_text(), rule_terms(), rule_soups(),
        st.sampled_from(env + ["UNSET_NEWSMON_VAR"]).map(lambda name: "${" + name + "}"),
        _VAR_TEXT)
    numbers = st.one_of(st.integers(-2, 70_000), st.integers(), st.integers(-10**40, 10**40), st.floats(),
                        st.sampled_from((0, 1, 10, 20, 65535, 65536, 2**63 - 1, 2**63, 10**400)))
    return st.one_of(strings, numbers, st.booleans(), _DATES)


def toml_values() -> st.SearchStrategy:
    """Any TOML value: scalars, lists of them, small tables."""
    return st.recursive(_scalar_values(), lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_ALL_KEYS), inner, max_size=3)), max_leaves=4)


@functools.lru_cache(maxsize=None)
def _seed_tables() -> tuple[dict, ...]:
    return tuple(tomllib.loads(text) for text in seed_config_texts())


def _known_keys(table, found: set[str]) -> set[str]:
    if isinstance(table, dict):
        for key, value in table.items():
            found.add(key)
            _known_keys(value, found)
    elif isinstance(table, list):
        for value in table:
            _known_keys(value, found)
    return found


# Keys of FULL_CONFIG plus those of the shared-catalog and webhook-format variants.
_ALL_KEYS = sorted(_known_keys(list(tomllib.loads(FULL_CONFIG).values()), set(tomllib.loads(FULL_CONFIG)))
                   | {"catalog", "data_path", "s3", "key_id", "region", "endpoint", "url_style", "use_ssl", "ssl"})


def leaf_paths(table, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys and list indices) to every scalar or list-of-scalars value under `table`."""
    items = table.items() if isinstance(table, dict) else enumerate(table)
    paths = []
    for key, value in items:
        if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
            paths.extend(leaf_paths(value, prefix + (key,)))
        else:
            paths.append(prefix + (key,))
    return paths


def seed_tables() -> tuple[dict, ...]:
    """The seed configs as parsed TOML, in seed_config_texts() order."""
    return _seed_tables()


@st.composite
def replaced_leaf(draw, tables: tuple[dict, ...]) -> tuple[dict, tuple]:
    """One of `tables` with the value at one leaf path replaced by any TOML value; (config, path)."""
    table = copy.deepcopy(draw(st.sampled_from(tables)))
    path = draw(st.sampled_from(leaf_paths(table)))
    _at(table, path[:-1])[path[-1]] = draw(toml_values())
    return table, path


@st.composite
def mutated_configs(draw) -> dict:
    """A seed config after a few structural edits: values replaced, keys deleted or added, tables emptied."""
    table = copy.deepcopy(draw(st.sampled_from(_seed_tables())))
    for _ in range(draw(st.integers(1, 4))):
        paths = leaf_paths(table)
        kind = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if not paths or kind == "add":
            parent = _at(table, draw(st.sampled_from(paths))[:-1]) if paths else table
            if isinstance(parent, dict):
                parent[draw(st.one_of(st.sampled_from(_ALL_KEYS), st.text(max_size=8)))] = draw(toml_values())
            continue
        path = draw(st.sampled_from(paths))
        parent = _at(table, path[:-1])
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(toml_values())
    return table


@st.composite
def generated_configs(draw) -> dict:
    """A config built from nothing: known sections with known and unknown keys, any values."""
    sections = draw(st.lists(st.sampled_from(("storage", "fetch", "dedup", "schedule", "alert_feeds", "channels",
                                              "feeds", "alerts", "bogus")), unique=True, max_size=6))
    table: dict = {}
    for name in sections:
        body = st.dictionaries(st.sampled_from(_ALL_KEYS), toml_values(), max_size=4)
        if name in ("feeds", "alerts"):
            table[name] = draw(st.lists(body, max_size=2))
        elif name == "channels":
            table[name] = draw(st.dictionaries(_label(), body, max_size=2))
        else:
            table[name] = draw(body)
    return table


def _at(table, path: tuple):
    for key in path:
        table = table[key]
    return table


def config_files() -> st.SearchStrategy[bytes]:
    """Bytes of a newsmon.toml: generated or mutated structures, or a seed's text with byte edits."""
    texts = Seeds(text.encode() for text in seed_config_texts())
    return st.one_of(generated_configs().map(toml_text).map(str.encode),
                     mutated_configs().map(toml_text).map(str.encode),
                     mutated_bytes(texts))
