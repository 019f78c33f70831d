"""Property tests of newsmon's input boundaries: every input ends as an outcome or a config error.

The checks (tests/properties.py) and strategies (tests/strategies.py) are those of bench/fuzz.py,
which runs them for minutes; here each gets a fixed, derandomised budget of examples so `make test`
stays reproducible and the file takes well under 30 s. Each @example is an input that once made an
exception escape (or broke a property); it stays as a regression test.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import strategies as S
from tests.properties import (check_config, check_config_leaf, check_feed, check_generated_feed, check_http_url,
                              check_page, check_rule, check_url, load_config, valid_seed_tables)

# Reproducible in CI (derandomize), no example database in the checkout, no per-example deadline on a
# loaded machine; max_examples per test keeps the whole file to a few seconds of CPU each.
PROPERTY = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])
FEED_SEED_BYTES = 32_000  # the fuzzer takes every corpus feed; here the smaller ones keep examples fast
PAGE_SEED_BYTES = 60_000


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Where each generated newsmon.toml is written (and the OPML file the seeds name)."""
    return tmp_path_factory.mktemp("config")


@pytest.fixture(scope="module")
def valid_seeds(folder):
    """The seed configs that load as they are (read once: each load costs a few milliseconds)."""
    return valid_seed_tables(folder)


# ---------------------------------------------------------------------------------------------- config


@settings(PROPERTY, max_examples=15)
@given(data=S.config_files())
@example(data=b"[fetch]\nretries = 1" + b"0" * 400)  # OverflowError: an int too large for a float
@example(data=b"[fetch]\nretries = " + b"9" * 5000)  # ValueError from tomllib: int() of 5,000 digits
@example(data=b'[storage]\ndatabase = "a\\u0000b"')  # ValueError: embedded null byte
@example(data=b'[storage]\ndatabase = "' + b"n" * 300 + b'/newsmon.duckdb"')  # OSError: file name too long
@example(data=b'[storage]\ndatabase = "~no-such-user-x/newsmon.duckdb"')  # RuntimeError: no home directory
@example(data=b'[[feeds]]\nopml = "' + b"o" * 300 + b'.opml"')  # OSError: file name too long
@example(data=b'[channels.a]\ntype = ["webhook"]')  # TypeError: unhashable type 'list'
@example(data=b'[[alerts]]\nname = "${NEWSMON_WEBHOOK_SECRET}"\nquery = "("')  # the secret in the error's key
@example(data=b'[[feeds]]\nopml = ""')  # accepted: a feed with no source at all
@example(data=b'storage = {}\n"\\n" = ""\n')  # a key holding a newline made the error two lines
@example(data=b'[[alerts]]\nname = "a"\nquery = "x"\ncooldown = "' + b"9" * 5000 + b's"')  # ValueError: int()
@example(data=b'[[alerts]]\nname = "a"\nquery = "x"\ncooldown = "99999999999d"')  # a run's timedelta overflows
@example(data=b'[[alerts]]\nname = "a"\nquery = "x NEAR/' + b"9" * 5000 + b' y"')  # ValueError: int()
def test_any_config_file_loads_to_settings_or_one_config_error_line(folder, data):
    check_config(data, folder)


def test_the_seed_configs_of_the_docs_load(valid_seeds):
    """The replaced-value property needs valid seeds: FULL_CONFIG and the README's example among them."""
    valid = valid_seeds
    assert S.seed_tables()[0] in valid  # FULL_CONFIG
    readme_example = next(t for t in S.seed_tables() if "channels" in t and "ops" in t["channels"]
                          and t is not S.seed_tables()[0])
    assert readme_example in valid
    assert len(valid) >= 3


@settings(PROPERTY, max_examples=15)
@given(data=st.data())
def test_a_replaced_value_is_reported_under_the_table_that_holds_it(folder, valid_seeds, data):
    table, path = data.draw(S.replaced_leaf(valid_seeds))
    check_config_leaf(table, path, folder)


def test_a_config_error_names_the_file_and_key_and_keeps_secrets_out(folder):
    """A bad value read from the environment is masked in the one error line, which names its key."""
    from flows.config import ConfigError

    secret = S.config_environ()["NEWSMON_WEBHOOK_SECRET"]
    outcome = load_config(b'[storage]\nmemory_limit = "${NEWSMON_WEBHOOK_SECRET}"\n', folder)
    assert isinstance(outcome, ConfigError) and outcome.key == "storage.memory_limit"
    assert secret not in str(outcome) and "***" in str(outcome)
    assert check_config(b'[storage]\nmemory_limit = "${NEWSMON_WEBHOOK_SECRET}"\n', folder) == \
        "ConfigError storage.memory_limit"


# ---------------------------------------------------------------------------------------------- rules


@settings(PROPERTY, max_examples=50)
@given(query=S.rule_texts())
@example(query="a NEAR/" + "9" * 5000 + " b")  # ValueError: int() of 5,000 digits
@example(query="a NEAR/4294967296 b")  # OverflowError in the search index: slop is 32 bits
def test_a_rule_parses_to_what_matcher_and_search_accept_or_a_query_error(query):
    check_rule(query)


# ---------------------------------------------------------------------------------------------- feeds


@settings(PROPERTY, max_examples=25)
@given(body=S.feed_bodies(FEED_SEED_BYTES))
# ValueError from canonical_url: NFKC turns the host '＃' into '#'
@example(body='<rss version="2.0"><channel><item><link>http://＃/</link></item></channel></rss>'.encode())
@example(body=b'<rss version="2.0"><channel><item><link>http://a.test/</link>'  # ValueError: year -1
              b"<updated>0000-00-00T00:00:00Z</updated></item></channel></rss>")
# UnicodeDecodeError inside feedparser: a non-ASCII byte in the declared encoding's name
@example(body=b'<?xml version="1.0" encoding="u\xe8"?><rss version="2.0"><channel></channel></rss>')
# KeyError 'links' inside feedparser's loose parser
@example(body=b'<rss version="2.0"><channel><item><link</item>>x</link></item></channel></rss>')
def test_feed_bytes_give_entries_or_a_parse_error(body):
    check_feed(body)


@settings(PROPERTY, max_examples=12)
@given(feed=S.generated_feeds())
def test_a_well_formed_feed_gives_every_item_with_its_canonical_link(feed):
    check_generated_feed(*feed)


# ---------------------------------------------------------------------------------------------- extraction


@settings(PROPERTY, max_examples=10)
@given(body=S.page_bodies(PAGE_SEED_BYTES))
@example(body=b"<html>")  # lxml AssertionError "too many bodies" from the summary fallback
@example(body=b"<html><body><link rel=canonical href='http://[x/'><p>" + b"Deir ez-Zor dispatch. " * 20
              + b"</p></body></html>")  # ValueError from urljoin on the declared canonical URL
def test_a_page_gives_an_article_or_the_feed_summary(body):
    check_page(body)


# ---------------------------------------------------------------------------------------------- URLs


@settings(PROPERTY, max_examples=60)
@given(url=S.any_urls(), base=st.one_of(st.none(), S.any_urls()))
@example(url="http://[abc", base=None)  # ValueError: Invalid IPv6 URL
@example(url="A://＃", base=None)  # ValueError: netloc changes under NFKC normalisation
@example(url="", base="A://[")  # ValueError from urljoin on the base
@example(url="http://[]/", base=None)  # ValueError: '' is no IPv4 or IPv6 address
@example(url="HTTP:..", base=None)  # no host: 'http:///..', then 'http:///' (not idempotent)
def test_canonical_url_takes_any_text_and_is_idempotent(url, base):
    check_url(url, base)


@settings(PROPERTY, max_examples=40)
@given(url=S.http_urls())
@example(url="https://[::1]:443/a")  # the default port stayed on an IPv6 host: two URLs for one page
def test_http_links_lose_case_fragment_default_port_and_trackers(url):
    check_http_url(url)
