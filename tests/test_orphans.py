"""kill -9 of `newsmon run` leaves no process behind: its children die with it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import article_html, rss, simple_config
from tests.loopback import Response

PAGES = 60  # enough for the extraction worker process (50 pages or more)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_children_die_with_a_killed_run(tmp_path, db_path, http_server):
    http_server.route("/feed.xml", Response(200, rss([http_server.url(f"/a/{i}.html") for i in range(PAGES)]),
                                            {"Content-Type": "application/rss+xml"}))
    for i in range(PAGES):
        http_server.route(f"/a/{i}.html", Response(200, article_html(i), {"Content-Type": "text/html"}, delay_s=0.2))
    config = simple_config(tmp_path, db_path, feeds=[http_server.url("/feed.xml")])
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(descendants(proc.pid)) < 3:  # resource tracker, forkserver, extraction worker
            assert proc.poll() is None and time.monotonic() < deadline, "the run never started its worker"
            time.sleep(0.05)
        children = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the run only, as the OOM killer would: not its process group
        proc.wait()
        deadline = time.monotonic() + 30
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [Path(f"/proc/{p}/cmdline").read_bytes()[:150] for p in children if alive(p)]
        assert not survivors, f"orphans outlived the killed run: {survivors}"
    finally:
        for p in descendants(proc.pid) | {proc.pid} | set(locals().get("children", ())):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
