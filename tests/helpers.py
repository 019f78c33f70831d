"""Small helpers shared by the flow tests: run a flow in-process, read a store."""
from __future__ import annotations

import asyncio
from pathlib import Path


def run_flow(config: str):
    """One ingest cycle through the real Prefect flow; returns its RunSummary."""
    from flows.ingest import ingest_flow

    return asyncio.run(ingest_flow(config))


def run_digest(config: str) -> dict:
    """One run of the digest flow."""
    from flows.digest import digest_flow

    return asyncio.run(digest_flow(config))


def query(db_path: Path | str, sql: str, params=()) -> list[tuple]:
    """Rows of a read-only query on the store of a configured database path."""
    from storage.db import open_reader

    con = open_reader(Path(db_path))
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def run_plain(config: str):
    """One ingest cycle as plain functions (what `newsmon run` does without PREFECT_API_URL)."""
    from flows.config import load_settings
    from flows.cycle import run_cycle

    return asyncio.run(run_cycle(load_settings(config)))


def article_html(n: int | str, words: int = 120, canonical: str | None = None) -> bytes:
    """An article page trafilatura extracts: a title and a few paragraphs of distinct words."""
    text = " ".join(f"mot{n}x{i}" for i in range(words))
    link = f"<link rel='canonical' href='{canonical}'>" if canonical else ""
    return (f"<html lang='fr'><head><title>Dépêche {n}</title>{link}</head><body><article><h1>Dépêche {n}</h1>"
            f"<p>Deir ez-Zor, dépêche numéro {n}. {text}.</p><p>Fin de la dépêche {n}, avec assez de texte "
            f"pour être un article.</p></article></body></html>").encode()


def rss(links: list[str], title: str = "Fil") -> bytes:
    """An RSS 2.0 feed with one item per link."""
    items = "".join(f"<item><title>Dépêche {i}</title><link>{link}</link>"
                    f"<pubDate>Mon, 25 Nov 2019 10:{i % 60:02d}:00 +0000</pubDate></item>"
                    for i, link in enumerate(links))
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{items}</channel></rss>'.encode()


def simple_config(tmp_path: Path, db_path: Path, feeds: list[str] = (), sites: list[str] = (), extra: str = "",
                  fetch: str = "allow_private_networks = true\nretries = 0\ntimeout_s = 5") -> str:
    """A newsmon.toml with the given feeds and sites, no alerts unless `extra` adds them."""
    entries = "".join(f'[[feeds]]\nurl = "{u}"\n\n' for u in feeds)
    entries += "".join(f'[[feeds]]\nsite = "{u}"\n\n' for u in sites)
    path = tmp_path / "newsmon.toml"
    path.write_text(f'[storage]\ndatabase = "{db_path}"\n\n[fetch]\n{fetch}\n\n{entries}{extra}\n', encoding="utf-8")
    return str(path)
