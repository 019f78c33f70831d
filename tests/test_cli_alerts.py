"""`newsmon alerts` and `newsmon alerts test` against a database filled by one real ingest of the fixture site."""
from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import _LEAKY_VARS
from tests.loopback import LoopbackHTTPServer, Response, SMTPSink
from tests.test_flow_alerts import (LYON_PATH, SEED_PATH, SEED_TITLE, alert, email, newsmon_command, run_flow,
                                    webhook, write_config)

LYON_TITLE = "Lyon : le conseil municipal adopte un budget 2020 centré sur les écoles et les pistes cyclables"


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    """A config whose database holds one ingest of the fixture site: 'ops' answered 500, 'desk' took the mail."""
    from flows.fixture_site import FixtureSite

    tmp_path = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as env, FixtureSite() as site, LoopbackHTTPServer() as hook, \
            SMTPSink() as smtp:
        for name in _LEAKY_VARS:
            env.delenv(name, raising=False)
        hook.route("/hook", Response(500, b"boom"))
        path = write_config(tmp_path, tmp_path / "newsmon.duckdb", site.feed_urls(),
                            [alert("syria", '"Deir ez-Zor" OR (Daesh AND pétrole)', "ops", "desk"),
                             alert("lyon", "title:Lyon", "desk")],
                            {"ops": webhook(hook.url("/hook")), "desk": email(smtp.port)})
        summary = run_flow(path)
        assert (summary.alerts.fired, summary.alerts.delivered, summary.alerts.pending) == (2, 2, 1)
    return path


def newsmon(*args: str, cwd) -> subprocess.CompletedProcess:
    """The installed command in a process of its own: exit status, stdout and stderr as a user sees them."""
    return subprocess.run([*newsmon_command(), *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=120)


def newsmon_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same entry point in this process (a new interpreter costs seconds of imports per call)."""
    from flows.cli import main

    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["newsmon", *args], status, out, err)


def test_alerts_lists_each_hit_with_its_status_per_channel(config, tmp_path):
    done = newsmon("alerts", "--config", config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["at", "alert", "title", "url", "deliveries"]
    syria = next(line for line in lines if " syria " in line)
    lyon = next(line for line in lines if " lyon " in line)
    assert SEED_TITLE[:40] in syria and syria.endswith("desk:sent, ops:pending (1 try: HTTP 500: boom)")
    assert LYON_TITLE[:40] in lyon and lyon.endswith("desk:sent")
    assert lines[-1] == "(2 rows)"


def test_alerts_test_prints_the_matching_story_with_its_snippet(config, capsys):
    done = newsmon_here(capsys, "alerts", "test", "Daesh AND pétrole", "--config", config)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"1. {SEED_TITLE}\n")
    assert SEED_PATH in out and LYON_PATH not in out
    assert "terms: Daesh, pétrole" in out or "terms: pétrole, Daesh" in out
    assert "puits de **pétrole**" in out
    assert out.splitlines()[-1] == "1 match(es) among 2 stored original article(s)", "wire copies are not searched"


def test_alerts_test_takes_config_before_the_subcommand(config, capsys):
    done = newsmon_here(capsys, "alerts", "--config", config, "test", "title:Lyon")
    assert done.returncode == 0, done.stderr
    assert LYON_TITLE in done.stdout and "**Lyon**" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("1 match(es)")


def test_alerts_test_with_no_match_says_so(config, capsys):
    done = newsmon_here(capsys, "alerts", "test", "Daeshville", "--config", config)
    assert (done.returncode, done.stdout) == (0, "0 match(es) among 2 stored original article(s)\n")


def test_alerts_test_with_a_broken_query_exits_2_with_the_column(config, tmp_path):
    done = newsmon("alerts", "test", "Daesh AND (pétrole OR", "--config", config, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["query: OR needs a term after it at column 20"]
