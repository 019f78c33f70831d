"""A config that `check` accepts must not make every run fail: bad values exit 2 from check and run.

Each case is one line naming the file, the key and the problem, before anything is fetched or written.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.cli import main
from flows.config import ConfigError, load_settings

BASE = '''
[storage]
database = "{database}"

[[feeds]]
url = "https://example.org/rss.xml"

[[alerts]]
name = "a"
query = "x"
channels = ["hook", "mail"]

[channels.hook]
type = "webhook"
url = "https://hooks.example.org/h"

[channels.mail]
type = "email"
smtp_host = "127.0.0.1"
from = "newsmon@example.org"
to = ["desk@example.org"]
'''


def config(tmp_path: Path, old: str = "", new: str = "", database: str = "data/newsmon.duckdb") -> Path:
    path = tmp_path / "newsmon.toml"
    text = BASE.format(database=database)
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def exit_and_stderr(capsys, command: str, path: Path) -> tuple[int, list[str]]:
    status = main([command, "--config", str(path)])
    return status, capsys.readouterr().err.strip().splitlines()


def assert_config_error(capsys, path: Path, key: str, problem: str) -> None:
    for command in ("check", "run"):
        status, lines = exit_and_stderr(capsys, command, path)
        assert status == 2, (command, lines)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{path}: {key}: ") and problem in lines[0], lines[0]


@pytest.mark.parametrize("old, new, key, problem", [
    ('from = "newsmon@example.org"', 'from = "a@b\\r\\nBcc: x@y"', "channels.mail.from", "line breaks"),
    ('to = ["desk@example.org"]', 'to = ["desk@example.org", "x@y\\nBcc: z@w"]', "channels.mail.to", "line breaks"),
    ('from = "newsmon@example.org"', 'from = "not an address"', "channels.mail.from", "e-mail address"),
    ('url = "https://hooks.example.org/h"', 'url = "http:///h"', "channels.hook.url", "host name"),
    ('url = "https://hooks.example.org/h"', 'url = "http://hooks.example.org:70000/h"', "channels.hook.url",
     "valid port"),
    ('url = "https://example.org/rss.xml"', 'url = "https://example.org:99999/rss.xml"', "feeds[0].url",
     "valid port"),
    ('smtp_host = "127.0.0.1"', 'smtp_host = "127.0.0.1"\nsmtp_port = 0', "channels.mail.smtp_port",
     "between 1 and 65_535"),
    ('smtp_host = "127.0.0.1"', 'smtp_host = "127.0.0.1"\nsmtp_port = 65536', "channels.mail.smtp_port",
     "between 1 and 65_535"),
    ('[storage]', '[schedule]\ningest = "99 * * * *"\n[storage]', "schedule.ingest", "not a valid cron"),
    ('[storage]', '[schedule]\ndigest = "0 7 * * mon-foo"\n[storage]', "schedule.digest", "not a valid cron"),
])
def test_values_that_would_fail_every_run_are_config_errors(tmp_path, capsys, old, new, key, problem):
    assert_config_error(capsys, config(tmp_path, old, new), key, problem)


@pytest.mark.parametrize("database, problem", [
    ("", "must not be empty"),
    ("{tmp}/somedir", "is a directory"),
    ("{tmp}/afile/newsmon.duckdb", "is not a directory"),
])
def test_unusable_database_paths_are_config_errors(tmp_path, capsys, database, problem):
    (tmp_path / "somedir").mkdir()
    (tmp_path / "afile").write_text("x")
    path = config(tmp_path, database=database.format(tmp=tmp_path))
    assert_config_error(capsys, path, "storage.database", problem)


def test_database_in_a_read_only_folder_is_a_config_error(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    # root ignores file modes, so the folder is a read-only file system of its own.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.chmod(0o555)
        if subprocess.run(["test", "-w", str(folder)]).returncode == 0:
            pytest.skip(f"cannot make a read-only folder here (mount: {mounted.stderr.strip()})")
    try:
        path = config(tmp_path, database=f"{folder}/newsmon.duckdb")
        assert_config_error(capsys, path, "storage.database", "is not writable")
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("line, key, problem", [
    ("[fetch]\ntimeout_s = nan", "fetch.timeout_s", "finite"),
    ("[fetch]\ntimeout_s = inf", "fetch.timeout_s", "finite"),
    ("[fetch]\nconnect_timeout_s = -inf", "fetch.connect_timeout_s", "finite"),
    ("[fetch]\nretries = 9223372036854775807", "fetch.retries", "between 0 and 10"),
    ("[fetch]\nbackoff_s = 1e300", "fetch.backoff_s", "between 0 and 60"),
    ("[fetch]\nconcurrency = 100000", "fetch.concurrency", "between 1 and 1_000"),
    ("[fetch]\nmax_bytes = 10", "fetch.max_bytes", "between 1_024"),
    ("[fetch]\nmax_redirects = 1000", "fetch.max_redirects", "between 0 and 20"),
    ("[dedup]\nnear_threshold = nan", "dedup.near_threshold", "(0, 1]"),
    ("[dedup]\nshingle = 100000", "dedup.shingle", "between 1 and 20"),
    ("[dedup]\nmin_words = 4", "dedup.min_words", "min_words (4) must be at least shingle (5)"),
    ("[dedup]\nshingle = 12\nmin_words = 10", "dedup.min_words", "at least shingle (12)"),
])
def test_non_finite_and_absurd_numbers_are_refused(tmp_path, capsys, line, key, problem):
    path = config(tmp_path, "[storage]", f"{line}\n[storage]")
    assert_config_error(capsys, path, key, problem)


@pytest.mark.parametrize("old, new, key, problem", [
    ('type = "webhook"', 'type = "webhook"\ntimeout_s = nan', "channels.hook.timeout_s", "finite"),
    ('type = "webhook"', 'type = "webhook"\nretries = 1000000', "channels.hook.retries", "between 0 and 10"),
    ('type = "email"', 'type = "email"\nmax_attempts = 0', "channels.mail.max_attempts", "between 1 and 1_000"),
    ('channels = ["hook", "mail"]', 'channels = ["hook", "mail"]\nmax_per_run = -1', "alerts[0] (a).max_per_run",
     "between 0"),
])
def test_channel_and_alert_numbers_are_bounded(tmp_path, capsys, old, new, key, problem):
    assert_config_error(capsys, config(tmp_path, old, new), key, problem)


@pytest.mark.parametrize("query", ["(" * 200 + "x" + ")" * 200, "NOT " * 500 + "x y", "title:(" * 100 + "x" + ")" * 100])
def test_deeply_nested_rules_are_a_config_error(tmp_path, capsys, query):
    path = config(tmp_path, 'query = "x"', f"query = '{query}'")
    assert_config_error(capsys, path, "alerts[0] (a).query", "nested more than 32 levels")


def test_the_documented_ranges_accept_their_bounds(tmp_path):
    path = config(tmp_path, "[storage]", "[fetch]\ntimeout_s = 600\nretries = 10\nbackoff_s = 0\n"
                  "concurrency = 1000\nmax_bytes = 1024\n[storage]")
    settings = load_settings(path, {})
    assert (settings.fetch.timeout_s, settings.fetch.retries, settings.fetch.max_bytes) == (600.0, 10, 1024)
    with pytest.raises(ConfigError, match="between 0.1 and 600, got 600.5"):
        load_settings(config(tmp_path, "[storage]", "[fetch]\ntimeout_s = 600.5\n[storage]"), {})
