"""A generated news site on 127.0.0.1 for the benchmarks: /f/<feed>.xml RSS feeds and
/a/<feed>/<entry>.html article pages, whose bytes the benchmark supplies.

Run in a process of its own (bench/soak.py, bench/shard_bench.py), so serving never competes with
a measured run for the GIL; a thread per connection.
"""
from __future__ import annotations

import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

FeedBytes = Callable[[str, int], bytes]  # (site base URL, feed number) -> RSS document
PageBytes = Callable[[int, int], bytes]  # (feed number, entry number) -> article page


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default listen backlog (5) drops connections when 4 shards x 32 open at once; a dropped
    # SYN waits a second for its retry and would be counted against newsmon.
    request_queue_size = 1024


def site_handler(feed: FeedBytes, page: PageBytes, latency_s: float = 0.0) -> type[BaseHTTPRequestHandler]:
    """A handler answering /f/<n>.xml with feed(base, n), /a/<n>/<e>.html with page(n, e), anything
    else 404; every answer after `latency_s`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if latency_s:
                time.sleep(latency_s)
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            feed_match = re.fullmatch(r"/f/(\d+)\.xml", self.path)
            page_match = re.fullmatch(r"/a/(\d+)/(\d+)\.html", self.path)
            if feed_match:
                body, kind = feed(base, int(feed_match.group(1))), "application/rss+xml"
            elif page_match:
                body, kind = page(int(page_match.group(1)), int(page_match.group(2))), "text/html"
            else:
                body, kind = b"", "text/plain"
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def serve_site(port_out, feed: FeedBytes, page: PageBytes, latency_s: float = 0.0) -> None:
    """Serve the site until the process ends; its port goes on `port_out` (a multiprocessing queue)."""
    server = SiteServer(("127.0.0.1", 0), site_handler(feed, page, latency_s))
    port_out.put(server.server_address[1])
    server.serve_forever()
