"""The s3:// data path against a real S3 API: moto's S3 server on loopback, a PostgreSQL catalog.

Real `newsmon` processes (run, sql, attach, maintain, two concurrent shards) write and read a lake
whose catalog is in the test PostgreSQL cluster (tests/postgres.py) and whose Parquet files are
objects in a bucket of moto's server on 127.0.0.1; the news site is the sharded tests' overlapping
one (tests/test_sharded.py). The S3 key and secret reach newsmon only through `${VAR}`s, and are
looked for in every output, the catalog's tables and every local file afterwards.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import re
import subprocess
import uuid
from pathlib import Path

import duckdb
import psycopg
import pytest

from flows.config import load_settings
from tests.postgres import _free_port
from tests.sharded_site import publish_feeds
from tests.test_sharded import NEWSMON, expected, finish, newsmon, outcome, overlapping_site, write_config

BUCKET = "newsmon-test"
REGION = "us-east-1"
KEY_ID = f"AKIATEST{uuid.uuid4().hex[:12].upper()}"
SECRET = f"s3-secret-{uuid.uuid4().hex}"
PG_PASSWORD = f"pg-secret-{uuid.uuid4().hex}"  # the cluster trusts loopback: sent nowhere, but must leak nowhere
CLI_WAIT_S = 180


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 with one empty bucket; a boto3 client on it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                              aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
        client.create_bucket(Bucket=BUCKET)
        client.endpoint = f"127.0.0.1:{port}"
        yield client
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch, tmp_path):
    """The credentials as environment variables (for newsmon's `${VAR}`s, in this process and the
    `newsmon` processes), a private HOME, and no AWS setting of the developer's."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NEWSMON_TEST_S3_KEY_ID", KEY_ID)
    monkeypatch.setenv("NEWSMON_TEST_S3_SECRET", SECRET)
    monkeypatch.setenv("NEWSMON_TEST_PG_PASSWORD", PG_PASSWORD)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def s3_config(tmp_path: Path, name: str, server, site, postgres, s3) -> Path:
    """The sharded tests' config, with its data files under s3://newsmon-test/<name>."""
    conninfo = f"{postgres.new_database()} password=${{NEWSMON_TEST_PG_PASSWORD}}"
    storage = f'''snapshot_retention_days = 0

[storage.s3]
key_id = "${{NEWSMON_TEST_S3_KEY_ID}}"
secret = "${{NEWSMON_TEST_S3_SECRET}}"
region = "{REGION}"
endpoint = "{s3.endpoint}"
url_style = "path"
use_ssl = false
'''
    return write_config(tmp_path / name, server, site, conninfo, f"hooks-{name}", data_path=f"s3://{BUCKET}/{name}",
                        storage=storage)


def cli(config: Path, *args: str, outputs: list[str]) -> str:
    """Run `newsmon ARGS --config CONFIG`; its stdout (stderr must be empty), both kept in `outputs`."""
    done = subprocess.run([NEWSMON, *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=CLI_WAIT_S)
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def objects(s3, prefix: str) -> set[str]:
    """Keys of the bucket's objects under `prefix/`."""
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
        keys |= {item["Key"] for item in page.get("Contents", [])}
    return keys


def catalog_files(config: Path) -> tuple[set[str], int]:
    """Bucket keys of the data and delete files the catalog lists (any snapshot), and how many files it
    has scheduled for deletion."""
    with psycopg.connect(load_settings(config).storage.shared.conninfo) as pg:
        root = pg.execute("SELECT value FROM newsmon_lake.ducklake_metadata WHERE key = 'data_path'").fetchone()[0]
        rows = pg.execute("""
            SELECT s.path, s.path_is_relative, t.path, t.path_is_relative, f.path, f.path_is_relative
            FROM (SELECT table_id, path, path_is_relative FROM newsmon_lake.ducklake_data_file
                  UNION ALL SELECT table_id, path, path_is_relative FROM newsmon_lake.ducklake_delete_file) f
            JOIN (SELECT DISTINCT ON (table_id) * FROM newsmon_lake.ducklake_table ORDER BY table_id,
                  begin_snapshot DESC) t USING (table_id)
            JOIN (SELECT DISTINCT ON (schema_id) * FROM newsmon_lake.ducklake_schema ORDER BY schema_id,
                  begin_snapshot DESC) s USING (schema_id)""").fetchall()
        scheduled = pg.execute("SELECT count(*) FROM newsmon_lake.ducklake_files_scheduled_for_deletion").fetchone()[0]
    assert root == f"s3://{BUCKET}/{config.parent.name}/", root
    keys = set()
    for schema, schema_rel, table, table_rel, path, path_rel in rows:
        where = root
        for part, relative in ((schema, schema_rel), (table, table_rel), (path, path_rel)):
            where = where + part if relative else part
        assert where.startswith(f"s3://{BUCKET}/"), where
        keys.add(where.removeprefix(f"s3://{BUCKET}/"))
    return keys, scheduled


def catalog_text(config: Path) -> str:
    """Every row of every table in the store's PostgreSQL database, as text."""
    with psycopg.connect(load_settings(config).storage.shared.conninfo) as pg:
        tables = pg.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema "
                            "NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'").fetchall()
        assert {"newsmon_lake", "newsmon_keys"} <= {schema for schema, _ in tables}, tables
        return "\n".join(str(row) for schema, table in tables
                         for row in pg.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall())


def assert_no_secret(texts: list[str], root: Path) -> None:
    """Neither secret in any text, nor in any file under `root` (the config's own `${VAR}`s aside)."""
    for text in texts:
        assert SECRET not in text and PG_PASSWORD not in text
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and PG_PASSWORD.encode() not in data, path


def backdate(key: str, days: int) -> None:
    """Make an object look `days` old (its LastModified): moto's server runs in this process."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.utils import utcnow
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["global"].buckets[BUCKET].keys.get(key).last_modified = (
        utcnow() - datetime.timedelta(days=days))


def local_parquet(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix == ".parquet" or p.name.startswith("ducklake-")]


def test_lake_on_s3_run_maintain_read_attach_without_leaking_the_secret(tmp_path, http_server, postgres, s3,
                                                                       s3_env):
    site = overlapping_site(http_server)
    publish_feeds(http_server, site)
    config = s3_config(tmp_path, "lake", http_server, site, postgres, s3)
    outputs: list[str] = []

    first = cli(config, "run", outputs=outputs)
    assert f"articles: {len(site.urls)} new (2 of them duplicates)" in first, first
    stored = json.loads(cli(config, "sql", "--format", "json", "SELECT url, duplicate_kind FROM articles",
                            outputs=outputs))
    assert sorted(row["url"] for row in stored) == sorted(site.urls)
    assert sorted(row["duplicate_kind"] for row in stored if row["duplicate_kind"]) == ["exact", "near"]

    # The data files are objects in the bucket, every one the catalog lists, and none is on local disk.
    keys = objects(s3, "lake")
    listed, _ = catalog_files(config)
    assert keys and all(key.endswith(".parquet") for key in keys), keys
    assert any(key.startswith("lake/main/articles/") for key in keys), keys
    assert listed and listed <= keys, listed - keys
    assert local_parquet(tmp_path) == []

    again = cli(config, "run", outputs=outputs)
    assert "articles: 0 new (0 of them duplicates)" in again, again
    assert json.loads(cli(config, "sql", "--format", "json", "SELECT count(*) AS n, count(DISTINCT url) AS urls "
                          "FROM articles", outputs=outputs)) == [{"n": len(site.urls), "urls": len(site.urls)}]

    # Upkeep: the second run's flush left two files in most tables; `newsmon maintain` merges them,
    # expires the snapshots (retention 0) and deletes the objects only those used, and an orphan a
    # failed commit left two days ago (one just written may be another writer's, in flight: kept).
    s3.put_object(Bucket=BUCKET, Key="lake/main/articles/ducklake-orphan-old.parquet", Body=b"PAR1")
    s3.put_object(Bucket=BUCKET, Key="lake/main/articles/ducklake-orphan-new.parquet", Body=b"PAR1")
    backdate("lake/main/articles/ducklake-orphan-old.parquet", days=2)
    before = objects(s3, "lake")
    report = cli(config, "maintain", outputs=outputs)
    found = re.fullmatch(r"maintenance: (\d+) files merged, (\d+) snapshots expired, (\d+) files deleted in \S+s\n",
                         report)
    assert found, report
    merged, expired, deleted = map(int, found.groups())
    assert merged > 0 and expired > 0 and deleted > 0, report
    after = objects(s3, "lake")
    listed, scheduled = catalog_files(config)
    assert "lake/main/articles/ducklake-orphan-old.parquet" not in after
    assert len(before - after) == deleted, "each file reported deleted is gone from the bucket"
    assert after - before, "the merged files are new objects"
    assert after == listed | {"lake/main/articles/ducklake-orphan-new.parquet"} and scheduled == 0, (
        "the bucket holds the files the catalog lists, and the fresh orphan")

    # Readers: newsmon.connect (the library) and a plain duckdb session from `newsmon attach`'s lines.
    assert outcome(config)["articles"] == expected(site), "every URL once, each copy linked to its original"
    import newsmon as library

    con = library.connect(config)
    try:
        assert con.execute("SELECT count(*) FROM articles").fetchone() == (len(site.urls),)
    finally:
        con.close()
    attach = cli(config, "attach", outputs=outputs)
    assert "<secret>" in attach and "password" not in attach, attach
    plain = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        for statement in attach.splitlines():
            if statement and not statement.startswith("--"):
                plain.execute(statement.replace("<secret>", SECRET))
        assert plain.execute("SELECT count(*) FROM articles").fetchone() == (len(site.urls),)
        assert plain.execute("SELECT count(*) FROM glob(?)", [f"s3://{BUCKET}/lake/**/*.parquet"]).fetchone() == (
            len(objects(s3, "lake")),)
    finally:
        plain.close()

    catalog = catalog_text(config)
    assert f"s3://{BUCKET}/lake/" in catalog and KEY_ID not in catalog
    assert_no_secret(outputs + [catalog], tmp_path)


def test_two_concurrent_shards_store_every_url_once_on_s3(tmp_path, http_server, postgres, s3, s3_env):
    site = overlapping_site(http_server)
    publish_feeds(http_server, site)
    config = s3_config(tmp_path, "sharded", http_server, site, postgres, s3)
    logs = {k: tmp_path / f"shard-{k}.log" for k in (1, 2)}
    shards = {k: newsmon(config, "run", "--shard", f"{k}/2", log=logs[k]) for k in (1, 2)}
    outputs = [finish(proc, logs[k]) for k, proc in shards.items()]
    assert all(f"shard:    {k}/2 of the feeds" in out for k, out in zip(shards, outputs)), outputs
    new = [int(re.search(r"^articles: (\d+) new", out, re.M).group(1)) for out in outputs]
    assert all(new) and sum(new) == len(site.urls), outputs
    result = outcome(config)
    assert result["articles"] == expected(site), "every URL stored once, each copy linked to its original"
    assert result["deliveries"] == sorted(("watch", url, c, "sent") for url in site.alerted for c in ("desk", "ops"))

    files = objects(s3, "sharded")
    assert files and files == catalog_files(config)[0], "the shards wrote the files the catalog lists"
    assert local_parquet(tmp_path) == []
    assert_no_secret(outputs + [catalog_text(config)], tmp_path)
