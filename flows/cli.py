"""The `newsmon` command."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from flows.config import ConfigError, Settings, config_path, load_settings

EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("newsmon: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one readable line; --debug (or NEWSMON_DEBUG=1) shows the traceback
        if args.debug:
            raise
        from ingest.redact import redact

        text = " ".join(f"{type(exc).__name__}: {exc}".split())  # DuckDB errors span lines
        print(redact(f"newsmon: error: {text}", getattr(args, "secrets", ())), file=sys.stderr)
        return EXIT_ERROR


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

    command("run", cmd_run, "run one ingest cycle (as a Prefect flow when PREFECT_API_URL is set)")
    command("digest", cmd_digest, "send pending hits of digest channels now")
    command("check", cmd_check, "validate the config file and exit")
    sql = command("sql", cmd_sql, "run a read-only SQL query against the store")
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "json", "csv"), default="table",
                     help="table (default), json (one array of row objects) or csv")
    sql.add_argument("--max-width", type=int, default=60, help="table format: truncate cells to this many characters")
    sql.add_argument("--timeout", type=_seconds, default=60.0,
                     help="stop the query after this many seconds (default 60; 0: no limit)")
    export = command("export", cmd_export, "write the result of a read-only query to a Parquet, CSV or JSON Lines file")
    export.add_argument("query")
    export.add_argument("file", type=Path, help="output file: .parquet, .csv, .jsonl (overwritten)")
    export.add_argument("--timeout", type=_seconds, default=600.0,
                        help="stop the export after this many seconds (default 600; 0: no limit)")
    command("attach", cmd_attach, "print the SQL that attaches the store read-only in a duckdb client")
    imp = command("import", cmd_import, "import articles from Parquet or JSON Lines files (.jsonl, .jsonl.gz)")
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument("--alerts", action="store_true", help="match imported stories against the alert rules too")
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
    settings = _settings(args)
    return run_and_report(settings, debug=args.debug)


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


def run_and_report(settings: Settings, debug: bool = False) -> int:
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
            summary = asyncio.run(ingest_flow(str(settings.path)))
    else:
        summary = _run_without_prefect(settings)
    print(f"newsmon run: {settings.database}")
    for line in summary.lines():
        print(line)
    return EXIT_OK


def _run_without_prefect(settings: Settings):
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
        return asyncio.run(run_cycle(settings, progress=progress, logger=logging.getLogger("newsmon.ingest")))


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
    from flows.output import print_csv, print_json
    from storage.db import open_sandbox, run_query

    settings = _settings(args)
    con = open_sandbox(settings.database, settings.storage.memory_limit)
    try:
        columns, rows = run_query(con, args.query, args.timeout or None)
    finally:
        con.close()
    if args.format == "json":
        print_json(columns, rows)
    elif args.format == "csv":
        print_csv(columns, rows)
    else:
        print_table(columns, rows, args.max_width)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from storage.db import export_query, open_sandbox

    settings = _settings(args)
    con = open_sandbox(settings.database, settings.storage.memory_limit, writable=args.file)
    try:
        rows = export_query(con, args.query, args.file, args.timeout or None)
    finally:
        con.close()
    print(f"export: {rows} row(s) written to {args.file}")
    return EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    from storage.db import EXTENSIONS, LAKE, attach_sql, extension_file

    database = _settings(args).database
    for name in EXTENSIONS:
        print(f"LOAD '{extension_file(name)}';")
    print(f"{attach_sql(database, read_only=True)};")
    print(f"USE {LAKE};")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from flows.importer import import_files
    from flows.progress import terminal_progress

    settings = _settings(args)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)}")
    with terminal_progress("rows") as progress:
        summary = import_files(settings, args.files, alerts=args.alerts, progress=progress)
    for line in summary.lines():
        print(line)
    return EXIT_ERROR if summary.failed_files else EXIT_OK


def cmd_feeds(args: argparse.Namespace) -> int:
    from storage.db import open_reader
    from storage.feeds import feed_health

    con = open_reader(_settings(args).database)
    try:
        print_table(*feed_health(con), max_width=50)
    finally:
        con.close()
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from storage.alerts import recent
    from storage.db import open_reader

    con = open_reader(_settings(args).database)
    try:
        print_table(*recent(con, args.limit), max_width=50)
    finally:
        con.close()
    return EXIT_OK


def cmd_alerts_test(args: argparse.Namespace) -> int:
    from flows.alert_test import try_query

    return try_query(_settings(args), args.query, args.limit)


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
