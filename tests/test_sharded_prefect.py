"""The sharded ingest end to end under Prefect, set up as the README's "Several machines" says.

A real `prefect server start` on loopback, the `newsmon` process work pool, the deployments of the
project's prefect.yaml (`prefect --no-prompt deploy --all`), a control worker for the default queue
and two shard workers (`--work-queue shards --limit 1`), a store on a PostgreSQL catalog shared by
every run, and a loopback news site whose feeds fall into both shards. The parent run is started
with `prefect deployment run 'sharded-ingest/sharded-ingest' ... --watch`, as users start it.

One module-scoped cycle (it costs a server, three workers and three flow-run processes); each
test checks one promise of it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.sharding import shard_of
from tests.helpers import WAIT_S, lake, wait_for
from tests.loopback import LoopbackHTTPServer, Request, Response
from tests.prefect_cluster import PrefectCluster
from tests.sharded_site import Site, add_article, publish_feeds, server_path, words

SHARDS = 2
SHARD_WORKERS = ("shard-worker-1", "shard-worker-2")
# How long a feed request is held for the other shard's (see FeedGate); the fetch timeout is above it.
GATE_S = 120


class FeedGate:
    """Feeds answer only once every shard has asked for its own: the shard runs are then in flight
    at the same time, so a worker that runs one flow at a time cannot have taken both."""

    def __init__(self, feed_paths: set[str]) -> None:
        self._waiting = set(feed_paths)
        self._lock = threading.Lock()
        self.all_asked = threading.Event()

    def hold(self, answer: Response):
        """A route handler that gives `answer` once every feed has been asked for (or GATE_S passed)."""
        def respond(request: Request) -> Response:
            with self._lock:
                self._waiting.discard(request.path.split("?")[0])
                if not self._waiting:
                    self.all_asked.set()
            self.all_asked.wait(GATE_S)
            return answer
        return respond


def two_shard_site(server: LoopbackHTTPServer) -> Site:
    """One feed per shard; an article linked from both (once with a tracking parameter), an alert
    hit of each shard's own, and one article the rule does not match."""
    site = Site(feeds={k: [] for k in range(1, SHARDS + 1)})
    i = 0
    while any(not feeds for feeds in site.feeds.values()):
        url = server.url(f"/f/feed-{i}.xml")
        if not site.feeds[shard_of(url, SHARDS)]:
            site.feeds[shard_of(url, SHARDS)].append(url)
        i += 1
    first, second = site.feeds[1][0], site.feeds[2][0]
    shared = add_article(server, site, first, "/a/shared.html", "Shared", words(1) + ["zorglub"], 6)
    site.items[second] = [(shared + "?utm_source=rss", "Shared", 6)]
    own = [add_article(server, site, feed, f"/s{k}/hit.html", f"Shard {k}", words(10 + k) + ["zorglub"], 7 + k)
           for k, feed in ((1, first), (2, second))]
    add_article(server, site, second, "/s2/plain.html", "Plain", words(20), 9)
    site.alerted = {shared, *own}
    return site


def gate_feeds(server: LoopbackHTTPServer, site: Site) -> FeedGate:
    """Publish the feeds behind a FeedGate."""
    publish_feeds(server, site)
    paths = {server_path(feed) for feeds in site.feeds.values() for feed in feeds}
    gate = FeedGate(paths)
    for path in paths:
        server.route(path, gate.hold(server.routes[path]))
    return gate


def write_config(directory: Path, server: LoopbackHTTPServer, site: Site, conninfo: str) -> Path:
    """The store on the shared PostgreSQL catalog, one webhook channel on the loopback server."""
    server.route("/hook", Response(200, b"ok"))
    feeds = "".join(f'[[feeds]]\nurl = "{u}"\n\n' for k in sorted(site.feeds) for u in site.feeds[k])
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "newsmon.toml"
    config.write_text(f'''[storage]
database = "{directory / 'local' / 'newsmon.duckdb'}"
catalog = "postgres:{conninfo}"
data_path = "{directory / 'lake'}"

[fetch]
allow_private_networks = true
timeout_s = {GATE_S + 30}
retries = 0

{feeds}[[alerts]]
name = "watch"
query = "zorglub"
channels = ["hook"]

[channels.hook]
type = "webhook"
url = "{server.url('/hook')}"
''', encoding="utf-8")
    return config


@dataclass
class ShardedCycle:
    """What one sharded cycle under Prefect left behind, gathered before every process was stopped."""

    site: Site
    config: Path
    parent: dict  # the flow run of sharded-ingest/sharded-ingest, as the API returns it
    shards: list[dict]  # the flow runs of ingest/ingest-shard, by shard
    all_runs: int
    workers: dict[str, list[str]]  # flow run id -> names of the workers that ran it
    shards_in_flight_together: bool
    hooks: list[Request]
    logs: str


def start_workers(cluster: PrefectCluster) -> None:
    """The README's workers: one on the default queue for the parent, one per machine for shards."""
    cluster.worker("control", "--pool", "newsmon", "--type", "process", "--work-queue", "default")
    for name in SHARD_WORKERS:
        cluster.worker(name, "--pool", "newsmon", "--type", "process", "--work-queue", "shards", "--limit", "1")


def runs_by_deployment(cluster: PrefectCluster) -> dict[str, list[dict]]:
    """Every flow run on the server, by deployment name (None for runs of no deployment)."""
    names = {cluster.api_get(f"/deployments/name/{name}")["id"]: name
             for name in ("sharded-ingest/sharded-ingest", "ingest/ingest-shard")}
    runs: dict[str, list[dict]] = {}
    for run in cluster.api_post("/flow_runs/filter", {"limit": 50}):
        runs.setdefault(names.get(run["deployment_id"]), []).append(run)
    return runs


@pytest.fixture(scope="module")
def cycle(tmp_path_factory, postgres) -> ShardedCycle:
    tmp = tmp_path_factory.mktemp("sharded-prefect")
    with LoopbackHTTPServer() as site_server, PrefectCluster(tmp / "prefect", postgres.new_database()) as cluster:
        # The Prefect server takes seconds to start: the site and the store's catalog are prepared meanwhile.
        site = two_shard_site(site_server)
        gate = gate_feeds(site_server, site)
        config = write_config(tmp / "store", site_server, site, postgres.new_database())
        cluster.wait_healthy()
        cluster.cli("work-pool", "create", "newsmon", "--type", "process")
        start_workers(cluster)  # they start while the deployments are made
        deployed = cluster.cli("--no-prompt", "deploy", "--all")
        assert "'sharded-ingest/sharded-ingest' successfully created" in deployed, deployed
        wait_for(lambda: cluster.workers_online() >= {"control", *SHARD_WORKERS}, "three workers online")
        watched = cluster.cli("deployment", "run", "sharded-ingest/sharded-ingest", "--param", f"config={config}",
                              "--param", f"shards={SHARDS}", "--watch", "--watch-interval", "1",
                              "--watch-timeout", str(WAIT_S), timeout_s=WAIT_S + 60)
        runs = runs_by_deployment(cluster)
        all_runs = [run for group in runs.values() for run in group]
        logs = f"{watched}\n{cluster.logs()}"
        assert len(runs.get("sharded-ingest/sharded-ingest", [])) == 1, logs
        return ShardedCycle(site, config, runs["sharded-ingest/sharded-ingest"][0],
                            sorted(runs.get("ingest/ingest-shard", []), key=lambda r: r["parameters"].get("shard")),
                            len(all_runs), {r["id"]: cluster.worker_of(r["id"]) for r in all_runs},
                            gate.all_asked.is_set(), site_server.hits("/hook"), logs)


def test_parent_and_every_shard_run_completed(cycle):
    assert cycle.parent["state_type"] == "COMPLETED", cycle.logs
    assert [(r["parameters"]["shard"], r["state_type"]) for r in cycle.shards] == [
        (f"{k}/{SHARDS}", "COMPLETED") for k in range(1, SHARDS + 1)], cycle.logs
    assert all(r["parameters"]["config"] == str(cycle.config) for r in cycle.shards)
    assert cycle.all_runs == 1 + SHARDS, "no other run (no schedule fired, no shard started twice)"


def test_the_shards_ran_at_once_on_both_shard_workers(cycle):
    assert cycle.workers[cycle.parent["id"]] == ["control"], cycle.logs
    assert sorted(name for r in cycle.shards for name in cycle.workers[r["id"]]) == sorted(SHARD_WORKERS), cycle.logs
    assert cycle.shards_in_flight_together, "each shard asked for its feed while the other was running"


def test_every_url_is_stored_once(cycle):
    rows = lake(cycle.config, "SELECT url, count(*) FROM articles GROUP BY url")
    assert sorted(rows) == sorted((url, 1) for url in cycle.site.urls)


def test_every_alert_is_delivered_once(cycle):
    ids = [r.headers["x-newsmon-delivery"] for r in cycle.hooks]
    assert len(ids) == len(set(ids)) == len(cycle.site.alerted), cycle.logs
    delivered = lake(cycle.config, "SELECT a.url, d.status FROM deliveries d JOIN articles a ON a.id = d.article_id")
    assert sorted(delivered) == sorted((url, "sent") for url in cycle.site.alerted)
