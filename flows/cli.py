"""The `newsmon` command."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import select
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from flows.config import ConfigError, Settings, config_path, load_settings

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat big | head`


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        status = args.handler(args)
        sys.stdout.flush()  # here, so that a reader gone early is handled below, not at interpreter exit
        return status
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("newsmon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one readable line; --debug (or NEWSMON_DEBUG=1) shows the traceback
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            # Whoever read our output stopped (`newsmon sql … | head`): end quietly, as cat or grep do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_PIPE
        if args.debug:
            raise
        from ingest.redact import redact

        text = " ".join(f"{type(exc).__name__}: {exc}".split())  # DuckDB errors span lines
        print(redact(f"newsmon: error: {text}", getattr(args, "secrets", ())), file=sys.stderr)
        return EXIT_ERROR


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsmon",
                                     description="Monitor news feeds: articles into DuckDB, alerts out.")
    parser.add_argument("--debug", action="store_true", default=bool(os.environ.get("NEWSMON_DEBUG")),
                        help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", help="config file (default: $NEWSMON_CONFIG, else ./newsmon.toml)")
        p.set_defaults(handler=handler)
        return p

    run = command("run", cmd_run, "run one ingest cycle (as a Prefect flow when PREFECT_API_URL is set)")
    run.add_argument("--shard", metavar="K/N", help="read only shard K of N of the feeds (several machines "
                                                    "sharing a PostgreSQL catalog; see docs/SCALING.md)")
    command("maintain", cmd_maintain, "compact the lake and expire old snapshots now (what a run does after it)")
    command("digest", cmd_digest, "send pending hits of digest channels now")
    command("check", cmd_check, "validate the config file and exit")
    sql = command("sql", cmd_sql, "run a read-only SQL query against the store")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "json", "csv"), default="table",
                     help="table (default), json (one array of row objects) or csv")
    sql.add_argument("--max-width", type=int, default=60, help="table format: truncate cells to this many characters")
    sql.add_argument("--timeout", type=_seconds, default=60.0,
                     help="stop the query after this many seconds (default 60; 0: no limit)")
    command("attach", cmd_attach, "print the SQL that attaches the store read-only in a duckdb client")
    imp = command("import", cmd_import, "import articles from Parquet or JSON Lines files (.jsonl, .jsonl.gz)")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--alerts", action="store_true", help="match imported stories against the alert rules too")
    imp.add_argument("--wait", type=_seconds, default=600.0,
                     help="wait this many seconds for a run writing the store to finish (default 600; 0: no wait)")
    command("feeds", cmd_feeds, "print feed health: last success, failures, last error, articles in 7 days")
    alerts = command("alerts", cmd_alerts, "list recent alert hits and their delivery status")
    alerts.add_argument("--limit", type=int, default=50)
    alerts_sub = alerts.add_subparsers(dest="alerts_command")
    test = alerts_sub.add_parser("test", help="try a query against stored articles before saving it as a rule")
    test.add_argument("query")
    # SUPPRESS: without a value here, `newsmon alerts --config F test Q` keeps F instead of resetting it to None.
    test.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    test.add_argument("--limit", type=int, default=20)
    test.set_defaults(handler=cmd_alerts_test)
    feed = alerts_sub.add_parser("feed", help="print the Atom feed of an alert rule's latest hits")
    feed.add_argument("name", help="the rule's name in the config")
    feed.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    feed.add_argument("--limit", type=int, help="entries (default: [alert_feeds] entries, 50)")
    feed.set_defaults(handler=cmd_alerts_feed)
    search = command("search", cmd_search, "ranked full-text search of stored articles (alert rule syntax)")
    search.add_argument("query", nargs="?", help='e.g. \'grève port\', \'"Deir ez-Zor" AND NOT title:football\'')
    search.add_argument("--since", type=since_arg, help="7d, 12h, 30m or a date (2024-06-01)")
    search.add_argument("--until", type=until_arg, help="a date (that whole day included) or a time")
    search.add_argument("--lang", action="append", default=[], help="only articles in this language (repeatable)")
    search.add_argument("--feed", action="append", default=[], help="only this feed URL or tag:NAME (repeatable)")
    search.add_argument("--originals", action="store_true", help="leave out copies of other articles")
    search.add_argument("--limit", type=int, default=20)
    search.add_argument("--format", choices=("table", "json", "csv"), default="table")
    search.add_argument("--reindex", action="store_true", help="rebuild the search index from the store first")
    stories = command("stories", cmd_stories, "story clusters: first seen, title, outlets that ran them")
    stories.add_argument("--since", type=since_arg, default="1d", help="stories with an article since (default 1d)")
    stories.add_argument("--min-sources", type=int, default=1, help="only stories run by at least N outlets")
    stories.add_argument("--limit", type=int, default=100)
    stories.add_argument("--format", choices=("table", "json", "csv"), default="table")
    export = command("export", cmd_export, "write articles to a .parquet, .csv or .jsonl file")
    export.add_argument("out", type=export_path, metavar="OUT")
    export.add_argument("--since", type=since_arg, help="7d, 12h or a date")
    export.add_argument("--originals", action="store_true", help="leave out copies of other articles")
    export.add_argument("--query", help="only articles matching this search query")
    export.add_argument("--sql", metavar="SELECT", help="write the result of this read-only query instead of articles")
    export.add_argument("--timeout", type=_seconds, default=600.0,
                        help="--sql: stop after this many seconds (default 600; 0: no limit)")
    demo = sub.add_parser("demo", help="serve the bundled fixture site and run one cycle into ./newsmon-demo.duckdb")
    demo.add_argument("--database", default="newsmon-demo.duckdb")
    demo.set_defaults(handler=cmd_demo)
    serve = command("serve", cmd_serve, "run ingest and digest on their schedules in one long-lived process")
    serve.add_argument("--ingest", help="cron for ingest (default: [schedule] ingest)")
    serve.add_argument("--digest", help="cron for digest (default: [schedule] digest)")
    serve.add_argument("--every", type=int, metavar="SECONDS", help="run ingest every N seconds instead of on cron")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(config_path(args.config))
    args.secrets = settings.secrets  # so that main() can redact them from an error line
    return settings


def prepare_prefect(settings: Settings) -> None:
    """Quiet, offline-friendly Prefect defaults; must run before prefect is imported. User settings win."""
    state = settings.database.parent / ".prefect"
    defaults = {
        "PREFECT_HOME": str(state),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls (they fail offline and log errors)
        "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",  # the local server's shutdown chatter, not our errors
        "PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL": "WARNING",  # one INFO line per task is noise
        "PREFECT_LOGGING_EXTRA_LOGGERS": "newsmon",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",  # first start on a slow disk migrates a DB
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    settings.database.parent.mkdir(parents=True, exist_ok=True)


def cmd_run(args: argparse.Namespace) -> int:
    from flows.sharding import parse_shard

    settings = _settings(args)
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as exc:
        print(f"newsmon: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_and_report(settings, shard, debug=args.debug)


class _NewsmonLinesOnly(logging.Filter):
    """The terminal shows newsmon's own log lines; Prefect's engine chatter ("Beginning flow run",
    "Encountered exception" with its traceback, "Finished in state Failed") still goes to the
    Prefect API and its UI, and the CLI prints the one-line error itself."""

    def __init__(self, prefect_dir: str) -> None:
        super().__init__()
        self.prefect_dir = prefect_dir

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(self.prefect_dir):
            return False
        record.exc_info, record.exc_text = None, None
        return True


def quiet_prefect_console() -> None:
    """Filter the console handler Prefect installs on the root logger (see _NewsmonLinesOnly)."""
    import prefect
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()
    prefect_dir = str(Path(prefect.__file__).resolve().parent)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NewsmonLinesOnly) for f in handler.filters):
            handler.addFilter(_NewsmonLinesOnly(prefect_dir))


def run_and_report(settings: Settings, shard=None, debug: bool = False) -> int:
    """Run one ingest cycle and print the one-screen summary.

    With a Prefect API configured (PREFECT_API_URL: a server, `newsmon serve`, a worker) the cycle runs
    as the `ingest` flow and Prefect records it. Without one, the same stages run as plain functions:
    a throwaway local API would cost seconds per run and keep records nobody sees. Either way the
    run is recorded in the store's `runs` table."""
    if os.environ.get("PREFECT_API_URL"):
        prepare_prefect(settings)
        from flows.ingest import ingest_flow  # prefect is imported only now, after its environment is set

        from flows.logredact import redacted_logs

        if not debug:
            quiet_prefect_console()
        with redacted_logs(settings.secrets):  # the engine's own records too, made outside the cycle
            summary = asyncio.run(ingest_flow(str(settings.path), str(shard) if shard else None))
    else:
        summary = _run_without_prefect(settings, shard)
    print(f"newsmon run: {settings.database}")
    for line in summary.lines():
        print(line)
    return EXIT_OK


def _run_without_prefect(settings: Settings, shard=None):
    from flows.cycle import run_cycle
    from flows.progress import terminal_progress

    logger = logging.getLogger("newsmon")
    if not logger.handlers:  # one line per feed and per warning on stderr, as the flow's logger prints them
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    with terminal_progress() as progress:
        return asyncio.run(run_cycle(settings, progress=progress, logger=logging.getLogger("newsmon.ingest"),
                                     shard=shard))


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"{settings.path}: ok ({len(settings.feeds)} feed entries, {len(settings.alerts)} alerts, "
          f"{len(settings.channels)} channels)")
    return EXIT_OK


def cmd_digest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    prepare_prefect(settings)
    from flows.digest import digest_flow

    if not args.debug:
        quiet_prefect_console()
    report = asyncio.run(digest_flow(str(settings.path)))
    print(f"digest: {report['delivered']} delivered, {report['pending']} pending, {report['failed']} failed")
    return EXIT_OK


def _seconds(text: str) -> float:
    value = float(text)
    if not (0 <= value <= 86400):
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds, got {text}")
    return value


def cmd_sql(args: argparse.Namespace) -> int:
    from flows.output import print_rows
    from storage.db import open_sandbox, run_query

    settings = _settings(args)
    con = open_sandbox(settings.database, settings.storage.memory_limit, shared=settings.storage.shared)
    try:
        columns, rows = run_query(con, args.query, args.timeout or None)
    finally:
        con.close()
    print_rows(args.format, columns, rows, lambda: print_table(columns, rows, args.max_width))
    return EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    from storage.db import EXTENSIONS, LAKE, attach_sql, extension_file, secret_sql

    settings = _settings(args)
    shared = settings.storage.shared
    for name in shared.extensions() if shared else EXTENSIONS:
        print(f"LOAD '{extension_file(name)}';")
    if shared is None:
        print(f"{attach_sql(settings.database, read_only=True)};")
    else:
        # Secrets stay out of the printed file: libpq reads PGPASSWORD or ~/.pgpass.
        if shared.s3:
            print("-- fill in the S3 secret (newsmon read it from the environment):")
            print(f"{secret_sql(shared.s3, secret='<secret>')};")
        print(f"{attach_sql(settings.database, True, shared, conninfo=shared.public_conninfo())};")
    print(f"USE {LAKE};")
    return EXIT_OK


def cmd_maintain(args: argparse.Namespace) -> int:
    from flows.upkeep import run_maintenance

    report = run_maintenance(_settings(args))
    if report is None:
        print("maintenance: already running on another machine, skipped")
    else:
        print(f"maintenance: {report.files_merged} files merged, {report.snapshots_expired} snapshots expired, "
              f"{report.files_deleted} files deleted in {report.seconds:.2f}s")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from flows.importer import import_files
    from flows.progress import terminal_progress

    settings = _settings(args)
    if settings.storage.shared is not None:
        print(f"newsmon: import writes a one-machine store; {settings.path} has a PostgreSQL catalog "
              "(docs/SCALING.md, Limits)", file=sys.stderr)
        return EXIT_CONFIG
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    from storage.lock import RunInProgress

    try:
        with terminal_progress("rows") as progress:
            summary = import_files(settings, args.files, alerts=args.alerts, progress=progress, wait_s=args.wait)
    except RunInProgress as exc:
        print(f"newsmon: import: nothing imported, {exc} (waited {args.wait:g}s, --wait)", file=sys.stderr)
        return EXIT_ERROR
    for line in summary.lines():
        print(line)
    return EXIT_ERROR if summary.failed_files else EXIT_OK


def cmd_feeds(args: argparse.Namespace) -> int:
    from storage.db import open_reader
    from storage.feeds import feed_health

    settings = _settings(args)
    con = open_reader(settings.database, settings.storage.memory_limit, settings.storage.shared)
    try:
        print_table(*feed_health(con), max_width=50)
    finally:
        con.close()
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from storage.alerts import recent
    from storage.db import open_reader

    settings = _settings(args)
    con = open_reader(settings.database, settings.storage.memory_limit, settings.storage.shared)
    try:
        print_table(*recent(con, args.limit), max_width=50)
    finally:
        con.close()
    return EXIT_OK


def cmd_alerts_test(args: argparse.Namespace) -> int:
    from flows.alert_test import try_query

    return try_query(_settings(args), args.query, args.limit)


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_arg(value: str) -> datetime:
    """--since: a span back from now (7d, 12h, 30m, 2w) or an ISO date/time (UTC unless it says otherwise)."""
    span = _SPAN.match(value.strip())
    if span:
        return datetime.now(timezone.utc) - timedelta(seconds=int(span.group(1)) * _UNITS[span.group(2)])
    return _moment(value)


def until_arg(value: str) -> datetime:
    """--until: an ISO time, or a date meaning the end of that day."""
    moment = _moment(value)
    return moment + timedelta(days=1) if len(value.strip()) == 10 else moment


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 7d, 12h, 30m or a date like 2024-06-01, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def export_path(value: str) -> Path:
    """OUT of `newsmon export`: its suffix names the format."""
    from storage.exports import FORMATS

    path = Path(value)
    if path.suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"{value}: use a .parquet, .csv or .jsonl file name")
    return path


def cmd_search(args: argparse.Namespace) -> int:
    from alerts.query import QueryError, parse
    from flows.search import hits_as_rows, reindex, resolve_feeds, search
    from search.query import Filters

    settings = _settings(args)
    if args.reindex:
        from flows.progress import terminal_progress

        started = time.monotonic()
        with terminal_progress("articles") as progress:
            count = reindex(settings.database, settings.storage.memory_limit, progress)
        print(f"search index rebuilt: {count} articles in {time.monotonic() - started:.1f}s", file=sys.stderr)
    if args.query is None:
        if args.reindex:
            return EXIT_OK
        raise ConfigError("newsmon search", "QUERY", "give a query, or --reindex")
    try:
        node = parse(args.query)
    except QueryError as exc:
        print(f"query: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    filters = Filters(args.since, args.until, tuple(args.lang),
                      resolve_feeds(settings.database, args.feed, settings.storage.memory_limit))
    hits = search(settings.database, args.query, filters, args.limit, args.originals, node)
    if args.format == "table":
        print_hits(hits)
    else:
        from flows.output import print_csv, print_json

        (print_json if args.format == "json" else print_csv)(*hits_as_rows(hits))
    return EXIT_OK


def print_hits(hits) -> None:
    """One block per hit: rank, title, date, language, score, then the URL and the snippet."""
    for rank, hit in enumerate(hits, 1):
        day = hit.published_at.strftime("%Y-%m-%d") if hit.published_at else "no date"
        print(f"{rank}. {hit.title or '(no title)'}\n   {day} · {hit.language or '?'} · score {hit.score:.2f}"
              f" · {hit.url}\n   {hit.snippet}\n")
    print(f"({len(hits)} hit{'s' if len(hits) != 1 else ''})")


def cmd_stories(args: argparse.Namespace) -> int:
    from flows.output import print_rows
    from storage.db import open_reader
    from storage.exports import stories

    settings = _settings(args)
    con = open_reader(settings.database, settings.storage.memory_limit)
    try:
        columns, rows = stories(con, args.since, args.min_sources, args.limit)
    finally:
        con.close()
    shown = [(r[0].strftime("%Y-%m-%d %H:%M") if r[0] else "", r[1], r[2], r[3], ", ".join(r[4])) for r in rows]
    print_rows(args.format, columns, rows, lambda: print_table(
        ["first_seen", "title", "outlets", "outlet", "also_reported_by"], shown, max_width=60))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from alerts.query import QueryError, parse
    from storage.db import open_reader
    from storage.exports import export_articles

    settings = _settings(args)
    if args.sql is not None:
        return _export_sql(settings, args)
    ids = None
    if args.query is not None:
        from flows.search import matching_ids

        try:
            node = parse(args.query)
        except QueryError as exc:
            print(f"query: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        ids = matching_ids(settings.database, node)
    con = open_reader(settings.database, settings.storage.memory_limit)
    try:
        count = export_articles(con, args.out, args.since, args.originals, ids)
    finally:
        con.close()
    print(f"export: {count} article(s) to {args.out}", file=sys.stderr)
    return EXIT_OK


def _export_sql(settings: Settings, args: argparse.Namespace) -> int:
    """`export OUT --sql Q`: a query's result in a sandbox that can write only OUT."""
    from storage.db import export_query, open_sandbox

    if args.since or args.originals or args.query:
        print("newsmon export: --sql goes alone (put --since, --originals, --query conditions in the SELECT)",
              file=sys.stderr)
        return EXIT_CONFIG
    con = open_sandbox(settings.database, settings.storage.memory_limit, writable=args.out,
                       shared=settings.storage.shared)
    try:
        rows = export_query(con, args.sql, args.out, args.timeout or None)
    finally:
        con.close()
    print(f"export: {rows} row(s) written to {args.out}")
    return EXIT_OK


def cmd_alerts_feed(args: argparse.Namespace) -> int:
    from flows.alert_feeds import alert_feed
    from storage.db import open_reader

    settings = _settings(args)
    alert = next((a for a in settings.alerts if a.rule.name == args.name), None)
    if alert is None:
        known = ", ".join(a.rule.name for a in settings.alerts) or "none"
        raise ConfigError(settings.path, "alerts", f"no alert named {args.name!r} (defined: {known})")
    con = open_reader(settings.database, settings.storage.memory_limit)
    try:
        document = alert_feed(con, alert, args.limit or settings.alert_feeds.entries)
    finally:
        con.close()
    sys.stdout.buffer.write(document)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import run_demo

    return run_demo(Path(args.database), lambda settings: run_and_report(settings, debug=args.debug))


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    prepare_prefect(settings)
    from flows.serve import serve

    return serve(settings, ingest_cron=args.ingest, digest_cron=args.digest, every_s=args.every)


def print_table(columns: Sequence[str], rows: Sequence[tuple], max_width: int = 60) -> None:
    """Print rows as an aligned text table (cells truncated to max_width)."""
    if not columns:
        print("(no result)")
        return
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _cell(value, max_width: int) -> str:
    text = "NULL" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
