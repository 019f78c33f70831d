"""A tiny static server for the bundled fixture news site, on 127.0.0.1 (stdlib only).

Text files may say {{BASE}} (this server as http://127.0.0.1:PORT) and {{ALT_BASE}} (the same
server as http://localhost:PORT), so one process plays two sites on loopback.
"""
from __future__ import annotations

import hashlib
import mimetypes
import threading
from email.message import Message
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Package data (pyproject.toml), so `newsmon demo` works from any install, not only from a checkout.
SITE_DIR = Path(__file__).resolve().parent / "demo_site"

_TEXT_SUFFIXES = {".html": "text/html", ".xml": "application/xml", ".txt": "text/plain"}


class FixtureSite:
    """Serves a site directory on 127.0.0.1 (a free port) from a background thread; a context manager."""

    def __init__(self, site_dir: Path = SITE_DIR) -> None:
        self.site_dir = Path(site_dir).resolve()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.site = self  # type: ignore[attr-defined]  # the handler reads bases and files here
        port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{port}"
        self.alt_base = f"http://localhost:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fixture-site", daemon=True)

    def url(self, path: str, alt: bool = False) -> str:
        """Absolute URL of a site path, under 127.0.0.1 (or under localhost with alt=True)."""
        return f"{self.alt_base if alt else self.base}/{path.lstrip('/')}"

    def feed_urls(self) -> list[str]:
        """The site's RSS and Atom feeds, then the partner feed on the second host name."""
        return [self.url("rss.xml"), self.url("atom.xml"), self.url("partenaire.xml", alt=True)]

    def start(self) -> "FixtureSite":
        """Start serving in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "FixtureSite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def resolve(self, request_path: str) -> Path | None:
        """The file a request path names, or None when it is absent or outside the site."""
        rel = unquote(urlsplit(request_path).path).lstrip("/")
        if rel == "" or rel.endswith("/"):
            rel += "index.html"
        candidate = (self.site_dir / rel).resolve()
        if not candidate.is_relative_to(self.site_dir) or not candidate.is_file():
            return None
        return candidate

    def render(self, path: Path) -> tuple[bytes, str]:
        """Body and Content-Type of a file, with the placeholders filled in for text files."""
        data = path.read_bytes()
        kind = _TEXT_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            return data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        text = data.decode("utf-8").replace("{{ALT_BASE}}", self.alt_base).replace("{{BASE}}", self.base)
        body = text.encode("utf-8")
        if kind == "application/xml":
            kind = _feed_type(body)
        return body, f"{kind}; charset=utf-8"


def _feed_type(body: bytes) -> str:
    """application/atom+xml or application/rss+xml by the root element, else plain XML."""
    head = body[:2048]
    if b"<feed" in head:
        return "application/atom+xml"
    if b"<rss" in head or b"<rdf:RDF" in head:
        return "application/rss+xml"
    return "application/xml"


def _not_modified(headers: Message, etag: str, mtime: int) -> bool:
    """RFC 9110 conditional GET: If-None-Match wins; If-Modified-Since only when it is absent."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = headers.get("If-Modified-Since")
    if not since:
        return False
    try:
        return int(parsedate_to_datetime(since).timestamp()) >= mtime
    except (TypeError, ValueError):
        return False  # an unparsable date is ignored, as the RFC says


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections do not pin a thread forever

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # silent: test output and the demo's terminal stay clean

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        site: FixtureSite = self.server.site  # type: ignore[attr-defined]
        path = site.resolve(self.path)
        if path is None:
            self._send(404, b"<!doctype html><title>404</title><h1>Page introuvable</h1>",
                       {"Content-Type": "text/html; charset=utf-8"}, send_body)
            return
        body, content_type = site.render(path)
        mtime = int(path.stat().st_mtime)
        # The ETag covers the served bytes, so a change of port or file is a new version.
        validators = {"ETag": f'"{hashlib.sha256(body).hexdigest()[:20]}"',
                      "Last-Modified": formatdate(mtime, usegmt=True)}
        if _not_modified(self.headers, validators["ETag"], mtime):
            self._send(304, b"", validators, send_body=False)
            return
        self._send(200, body, {"Content-Type": content_type, **validators}, send_body)

    def _send(self, status: int, body: bytes, headers: dict[str, str], send_body: bool) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)


def main() -> None:
    """Serve the fixture site until interrupted, printing its feed URLs."""
    with FixtureSite() as site:
        print(f"fixture site on {site.base} (also {site.alt_base})")
        for url in site.feed_urls():
            print(url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
