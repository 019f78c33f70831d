"""Config validation: a good file loads; every bad one names file, key and problem, and exits 2 before any work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.config import ConfigError, load_settings
from tests.helpers import newsmon_config

GOOD = newsmon_config()
ENV = {"NEWSMON_WEBHOOK_SECRET": "hush", "SMTP_USER": "u", "SMTP_PASSWORD": "p"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsmon.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_example_loads(tmp_path):
    settings = load_settings(write(tmp_path, GOOD), ENV)
    assert settings.database == (tmp_path / "data/newsmon.duckdb").resolve()
    assert settings.fetch.timeout_s == 15.0 and settings.fetch.allow_private_networks is False
    assert settings.feeds[0].tags == ("world",)
    assert settings.channels["ops"].secret == "hush"
    assert settings.channels["desk"].starttls is True and settings.channels["desk"].to == ("desk@example.org",)
    assert settings.alerts[0].channels == ("ops", "desk")
    assert (settings.storage.memory_limit, settings.storage.snapshot_retention_days) == ("2GB", 30)


@pytest.mark.parametrize("change, key, problem", [
    (("timeout_s = 15", "timeout = 15"), "fetch.timeout", "unknown key"),
    (("timeout_s = 15", 'timeout_s = "fast"'), "fetch.timeout_s", "must be a number"),
    (("max_bytes = 5_000_000", "max_bytes = -1"), "fetch.max_bytes", "between 1_024 and 1_000_000_000"),
    (('channels = ["ops", "desk"]', 'channels = ["ops", "pager"]'), "channels", "'pager' is not defined"),
    (('"Deir ez-Zor" OR (Daesh AND pétrole)', '"Deir ez-Zor" OR (Daesh AND'), "query", "column"),
    (('url = "https://example.org/world/rss.xml"', 'url = "ftp://example.org/rss"'), "feeds[0].url", "http(s) URL"),
    (('type = "webhook"', 'type = "pager"'), "channels.ops.type", "must be one of"),
    (("[storage]", "[storag]"), "storag", "unknown key"),
    (('database = "data/newsmon.duckdb"', 'database = "data/newsmon.duckdb"\nmemory_limit = "lots"'),
     "storage.memory_limit", "must be a size"),
    (('database = "data/newsmon.duckdb"', 'database = "data/newsmon.duckdb"\nsnapshot_retention_days = -1'),
     "storage.snapshot_retention_days", "between 0 and 36500"),
    (("[storage]", "[dedup]\nnear_window_days = 0\n[storage]"), "dedup.near_window_days", "between 1 and 3_650"),
    (("[storage]", "[extract]\nworkers = 65\n[storage]"), "extract.workers", "between 0 and 64"),
    (("[storage]", "[extract]\nworkers = -1\n[storage]"), "extract.workers", "between 0 and 64"),
    (("[storage]", "[extract]\nworkers = \"all\"\n[storage]"), "extract.workers", "must be"),
    (("[storage]", "[extract]\nprocesses = 2\n[storage]"), "extract.processes", "unknown key"),
])
def test_bad_values_name_the_key(tmp_path, change, key, problem):
    path = write(tmp_path, GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, ENV)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and key in message and problem in message
    assert "\n" not in message


def test_extraction_workers_default_to_one_per_cpu_and_can_be_set(tmp_path):
    assert load_settings(write(tmp_path, GOOD), ENV).extract_workers == 0  # 0: one per CPU
    path = write(tmp_path, GOOD.replace("[storage]", "[extract]\nworkers = 3\n[storage]", 1))
    assert load_settings(path, ENV).extract_workers == 3


def test_duplicate_alert_names_are_refused(tmp_path):
    twice = GOOD + '''
[[alerts]]
name = "syria"
query = "Damas"
'''
    with pytest.raises(ConfigError, match=r"alerts\[1\]\.name: 'syria' is used by an earlier alert"):
        load_settings(write(tmp_path, twice), ENV)


def test_unset_variable_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"channels\.ops\.secret: environment variable NEWSMON_WEBHOOK_SECRET"):
        load_settings(write(tmp_path, GOOD), {"SMTP_USER": "u", "SMTP_PASSWORD": "p"})


def test_broken_toml_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, GOOD + "\n[[feeds]\n"), ENV)


@pytest.mark.parametrize("command", [["run"], ["check"], ["sql", "SELECT 1"]])
def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, command):
    path = write(tmp_path, GOOD.replace('channels = ["ops", "desk"]', 'channels = ["nope"]'))
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *command, "--config", str(path)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **ENV}, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(str(path)) and "'nope' is not defined" in lines[0]
    assert not (tmp_path / "data").exists(), "nothing is written when the config is bad"


def test_missing_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(tmp_path / "absent.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr
