"""`newsmon feeds`: the feed health table, read by a separate process after a real run."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.loopback import Response

pytestmark = pytest.mark.usefixtures("prefect_server")

PAGE = ("<!DOCTYPE html><html lang='fr'><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        "<p>{title} : le conseil municipal a voté mardi soir un budget en hausse pour les écoles du quartier, "
        "après trois heures de débats animés entre la majorité et l'opposition.</p>"
        "<p>Les travaux commenceront au printemps et dureront deux ans, selon l'adjoint chargé des finances.</p>"
        "</article></body></html>")


def rss(base: str, slugs: list[str]) -> bytes:
    items = "".join(f"<item><title>{s}</title><link>{base}/{s}.html</link><description>Résumé {s}.</description>"
                    f"</item>" for s in slugs)
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Flux</title>{items}'
            f"</channel></rss>").encode("utf-8")


def newsmon(*args: str) -> subprocess.CompletedProcess:
    """Run the installed console script (or the module when the script is missing)."""
    script = Path(sys.executable).with_name("newsmon")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "flows.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSMON_", "PREFECT_"))}
    return subprocess.run(command + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def parse_table(output: str) -> list[dict[str, str]]:
    """Rows of a print_table table, cut at the column positions its dashed rule gives."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("-"))
    spans, start = [], 0
    for width in (len(dashes) for dashes in lines[rule].split("  ")):
        spans.append((start, start + width))
        start += width + 2
    cut = lambda line: [line[a:b].strip() for a, b in spans]  # noqa: E731
    header = cut(lines[rule - 1])
    return [dict(zip(header, cut(line))) for line in lines[rule + 1:] if line and not line.startswith("(")]


def test_feeds_command_shows_health_after_a_run(tmp_path, http_server):
    from flows.ingest import ingest_flow

    slugs = ["budget-ecoles", "travaux-printemps"]
    http_server.route("/good.xml", Response(200, rss(http_server.base, slugs), {"Content-Type": "application/rss+xml"}))
    for s in slugs:
        http_server.route(f"/{s}.html", Response(200, PAGE.format(title=s).encode(), {"Content-Type": "text/html"}))
    http_server.route("/gone.xml", Response(410, b"gone", {"Content-Type": "text/plain"}))
    config = tmp_path / "newsmon.toml"
    config.write_text(f"""[storage]
database = "data/newsmon.duckdb"

[fetch]
allow_private_networks = true
retries = 0

[[feeds]]
url = "{http_server.url('/good.xml')}"
name = "Le Bon Flux"

[[feeds]]
url = "{http_server.url('/gone.xml')}"
name = "Flux disparu"
""", encoding="utf-8")
    summary = asyncio.run(ingest_flow(str(config)))
    assert (summary.feeds_ok, summary.feeds_failed, summary.articles_new) == (1, 1, 2)

    result = newsmon("feeds", "--config", str(config))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "url", "last_ok", "failures", "last_error", "articles_7d", "next_check"]
    rows = {row["name"]: row for row in parse_table(result.stdout)}
    assert set(rows) == {"Le Bon Flux", "Flux disparu"}
    gone, good = rows["Flux disparu"], rows["Le Bon Flux"]
    assert (gone["url"], gone["last_ok"], gone["failures"], gone["last_error"], gone["articles_7d"]) == \
        (http_server.url("/gone.xml"), "NULL", "1", "HTTP 410", "0")
    assert gone["next_check"] != "NULL"
    assert (good["url"], good["failures"], good["last_error"], good["articles_7d"], good["next_check"]) == \
        (http_server.url("/good.xml"), "0", "NULL", "2", "NULL")
    assert good["last_ok"] != "NULL"
    assert lines.index(next(line for line in lines if "Flux disparu" in line)) < \
        lines.index(next(line for line in lines if "Le Bon Flux" in line)), "failing feeds come first"
    assert result.stdout.rstrip().endswith("(2 rows)")
