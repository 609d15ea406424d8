"""The ``crisiswatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api.settings import Settings

log = logging.getLogger("crisiswatch")

DISTRIBUTED_ROLES = ("listener", "scorer", "detector", "alerter", "api")
BUS_ROLE_COMMANDS = {
    "listener": "the mentions it takes in would reach no scorer: accepted, then dropped",
    "scorer": "no listener's mentions would ever reach it, nor its scores a detector",
    "detector": "no scorer's mentions would ever reach it, nor its Signals an alerter",
    "alerter": "no detector's Signals would ever reach it (no incident, no alert)",
}
"""The role commands that exchange events with the other roles' processes, and what
their events would do over an in-process bus that no other process shares."""


LOG_HANDLER = "crisiswatch-cli"
QUIET_LIBRARY_LOGGERS = (
    "aiokafka",
    "httpx",
    "apscheduler.executors",
    "apscheduler.scheduler",
    "core.db.DisposablePool",
    "alembic.runtime.plugins",
)
"""Library loggers kept at WARNING: nothing they say at INFO helps an operator. SQLAlchemy's
pool logs under its class's name, ours (``core.db.DisposablePool``), outside the
``sqlalchemy`` logger that SQLAlchemy keeps at WARNING: every stop printed "Pool disposed.
... Current Overflow: -5" and "Pool recreating". Alembic names each plugin at every start."""


def _setup_logging(level: str) -> None:
    """Log to stderr with time, level and logger, at ``level``. Called before the settings
    are loaded (at WARNING: what loading warns about, such as a misspelt variable, comes out
    in this format) and again with their ``log_level``. Where the root logger already had
    handlers of its own (an embedding program, a test), they and its level are kept."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(LOG_HANDLER)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        root.addHandler(handler)
    if any(h.get_name() == LOG_HANDLER for h in root.handlers):
        root.setLevel(getattr(logging, level, logging.INFO))
    for noisy in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # aiokafka logs the same errors ~75 times a second while the broker is down: one line
    # of each kind per CLIENT_LOG_INTERVAL, with the count of those held back
    from core.bus.kafka import quiet_client_logs

    quiet_client_logs()


def _port(value: str) -> int:
    """An argparse type: a TCP port a server can listen on (as ``api.port`` takes)."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1 to 65535")
    return port


def _positive(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not 1 or more")
    return number


def _minutes_list(value: str) -> tuple[float, ...]:
    """An argparse type: comma-separated story ages in minutes (``none``: no ages)."""
    if value.strip().lower() in ("none", ""):
        return ()
    ages: list[float] = []
    for part in value.split(","):
        try:
            age = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not minutes") from None
        if not 0 < age <= 7 * 24 * 60:
            raise argparse.ArgumentTypeError(f"{age:g} is not between 0 and 10080 minutes")
        ages.append(age)
    if len(set(ages)) > 24:
        raise argparse.ArgumentTypeError("at most 24 ages")
    return tuple(sorted(set(ages)))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crisiswatch",
        description="Real-time social listening and tiered crisis alerts.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="everything in one process (embedded: memory bus + SQLite)")
    run.add_argument("--config", type=Path, help="YAML config file")
    run.add_argument(
        "--demo",
        action="store_true",
        help="add the demo brand and its generated stream (default without --config); the "
        "detector then starts afresh on each run (detector.state_store memory unless set)",
    )
    run.add_argument("--host", help="API host (overrides api.host)")
    run.add_argument("--port", type=_port, help="API port (overrides api.port)")

    for role in DISTRIBUTED_ROLES:
        r = sub.add_parser(
            role, help=f"run the {role} stage alone (distributed: Kafka + PostgreSQL)"
        )
        r.add_argument("--config", type=Path, help="YAML config file")
        r.add_argument("--host", help="HTTP host for health/metrics (and the API)")
        r.add_argument("--port", type=_port, help="HTTP port for health/metrics (and the API)")

    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    up = db_sub.add_parser("upgrade", help="run the migrations up to the newest revision")
    up.add_argument("--config", type=Path)
    up.add_argument("--revision", default="head")
    down = db_sub.add_parser(
        "downgrade",
        help="roll the schema back to --revision (before running an older release); "
        "what the newer migrations added is dropped: back the database up first",
    )
    down.add_argument("--config", type=Path)
    down.add_argument("--revision", required=True, help="e.g. 0014, or -1 for one step")

    chk = sub.add_parser("check-config", help="validate a config file offline")
    chk.add_argument("file", type=Path)

    from api.output import path_arg

    rep = sub.add_parser(
        "replay", help="backtest: run listener -> scorer -> detector in event time"
    )
    rep.add_argument(
        "--input",
        type=path_arg,
        required=True,
        help="mentions, .jsonl or .jsonl.gz; - for stdin",
    )
    rep.add_argument(
        "--output",
        type=path_arg,
        required=True,
        help="tier/spread changes, JSONL; - for stdout (the summary goes to stderr)",
    )
    rep.add_argument("--config", type=Path, help="YAML config (watches, detector, scorer)")
    rep.add_argument("--limit", type=_positive, help="stop after this many input lines")
    rep.add_argument(
        "--forecast-at",
        type=_minutes_list,
        metavar="MINUTES",
        help="also write every story's forecast (predicted_size) at these ages, minutes "
        "after its first mention, comma-separated ('none': only level changes; default: "
        "the config's detector.forecast_report_minutes, else 10,30,60)",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    keys = sub.add_parser("keys", help="API keys: make one, or hash one for api.keys[].key_sha256")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    keys_sub.add_parser("new", help="generate a key; print it and its SHA-256 digest")
    keys_sub.add_parser(
        "hash", help="read a key from stdin (or a hidden prompt); print its SHA-256 digest"
    )

    tpl = sub.add_parser("templates", help="response templates")
    tpl_sub = tpl.add_subparsers(dest="templates_command", required=True, metavar="TPL_COMMAND")
    seed = tpl_sub.add_parser(
        "seed", help="add the starter templates (zh + en) as drafts that need legal review"
    )
    seed.add_argument("--config", type=Path)

    bf = sub.add_parser("backfill", help="recent history of a watch from searchable sources")
    bf.add_argument("--config", type=Path, required=True, help="YAML config (watches, sources)")
    bf.add_argument("--watch", required=True, help="the watch id")
    bf.add_argument("--since", default="24h", help="how far back: 90m, 24h, 7d (default 24h)")
    bf.add_argument(
        "--output",
        type=Path,
        required=True,
        help="mentions, JSONL (oldest first); replaced only when the backfill ends",
    )
    bf.add_argument("--quiet", action="store_true", help="no progress bar (the report stays)")

    from api.sentiment_cli import add_parser as add_sentiment_parser

    add_sentiment_parser(sub)

    from api.watch_test import add_parser as add_watches_parser

    add_watches_parser(sub)

    from api.dead_letters import parse_since, parse_topic

    dl = sub.add_parser(
        "dead-letters", help="see the events the bus dead-lettered; publish them again"
    )
    dl_sub = dl.add_subparsers(dest="dead_letters_command", required=True, metavar="DL_COMMAND")
    dl_list = dl_sub.add_parser(
        "list",
        help="one line per dead letter not yet re-driven, oldest first (Kafka: the .dlq "
        "topics; embedded: the bus journal, with crisiswatch run stopped)",
    )
    dl_list.add_argument("--config", type=Path, help="YAML config (bus, database)")
    dl_list.add_argument("--topic", type=parse_topic, help="mentions, scored or signals")
    dl_list.add_argument(
        "--since",
        type=parse_since,
        metavar="ISO",
        help="dead-lettered at or after (UTC if no zone)",
    )
    dl_list.add_argument("--limit", type=_positive, help="only the newest N")
    dl_list.add_argument(
        "--json", action="store_true", help="JSON lines with the whole record (value included)"
    )
    dl_redrive = dl_sub.add_parser(
        "redrive",
        help="publish dead letters back to their topic with their key (after fixing the "
        "cause); each is re-driven once, and the redrive is recorded in the audit log "
        "(database.url) as cli:<OS user>",
    )
    dl_redrive.add_argument("--config", type=Path, help="YAML config (bus, database)")
    dl_redrive.add_argument(
        "--topic", type=parse_topic, required=True, help="mentions, scored or signals"
    )
    which = dl_redrive.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        dest="ids",
        nargs="+",
        action="extend",
        metavar="EVENT_ID",
        help="the letters holding these event ids",
    )
    which.add_argument("--all", action="store_true", help="every letter of the topic")
    dl_redrive.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be published; publish (and record) nothing",
    )

    bench = sub.add_parser("bench", help="benchmarks against data with known answers")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    det = bench_sub.add_parser(
        "detection", help="detection quality and speed on a replay stream with a truth CSV"
    )
    det.add_argument("--input", type=Path, required=True, help="mentions, .jsonl or .jsonl.gz")
    det.add_argument("--truth", type=Path, required=True, help="truth CSV (one row per story)")
    det.add_argument("--config", type=Path, help="YAML config (detector, scorer, watches)")
    det.add_argument("--stories", type=_positive, help="only the first N stories of the truth")
    det.add_argument(
        "--detector-only", action="store_true", help="skip the whole replay (no classifier)"
    )
    det.add_argument("--json", type=Path, help="write the results here as JSON")
    det.add_argument("--replay-output", type=Path, help="keep the replay's output here")
    det.add_argument("--quiet", action="store_true", help="no progress output")
    fit = bench_sub.add_parser(
        "fit-size",
        help="fit a final-size model (detector predictor: fitted) on stories with known sizes",
    )
    fit.add_argument("--input", type=Path, required=True, help="mentions, .jsonl or .jsonl.gz")
    fit.add_argument("--truth", type=Path, required=True, help="truth CSV (final_size per story)")
    fit.add_argument("--output", type=Path, required=True, help="the model file to write")
    fit.add_argument("--config", type=Path, help="YAML config (the detector's windows)")
    fit.add_argument(
        "--ages", help="minutes after a story's first mention to learn from, comma-separated"
    )
    fit.add_argument("--trees", type=int, default=150)
    fit.add_argument("--depth", type=int, default=3)
    fit.add_argument("--learning-rate", type=float, default=0.06)
    fit.add_argument("--min-leaf", type=int, default=30)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--folds", type=_positive, default=5, help="cross-validation folds (1: none)")
    fit.add_argument(
        "--loss",
        choices=("median", "relative", "absolute"),
        default="median",
        help="median: each tree's leaves minimise their median relative error of the size "
        "(default); relative: the relative error of the size; absolute: of its log",
    )
    fit.add_argument(
        "--relative-cap",
        type=float,
        default=0.3,
        help="the relative loss's row weights stay within e^-CAP..e^CAP",
    )
    fit.add_argument(
        "--top-weight",
        type=float,
        default=2.0,
        help="weight of the stories in the top 10 %% by final size (1: all the same)",
    )
    fit.add_argument(
        "--calibrate",
        action="store_true",
        help="shift the model by the constant that minimises the cross-validated median "
        "relative error (lowers the sizes of the biggest stories most)",
    )
    fit.add_argument("--json", type=Path, help="write the report here as JSON")
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _minutes(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--ages: {value.strip()!r} is not minutes") from None


def _fit_size(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from api.fit_size import DEFAULT_AGES, check_output, fit_size, render
    from api.output import OutputError
    from sentiment.detector.sizefit import FitSettings

    try:
        ages = (
            tuple(_minutes(a) for a in args.ages.split(",") if a.strip())
            if args.ages
            else DEFAULT_AGES
        )
        if not ages or not all(math.isfinite(a) and 0 < a <= 30 * 24 * 60 for a in ages):
            raise ValueError("ages must be minutes between 0 and 43,200 (30 days)")
        if args.calibrate and args.folds < 2:  # (--folds below 1: argparse's)
            raise ValueError("--calibrate needs cross-validation (--folds 2 or more)")
        fit_settings = FitSettings(
            trees=args.trees,
            depth=args.depth,
            learning_rate=args.learning_rate,
            min_leaf=args.min_leaf,
            seed=args.seed,
            loss=args.loss,
            relative_cap=args.relative_cap,
            top_weight=args.top_weight,
        )
    except ValueError as exc:
        print(f"crisiswatch bench fit-size: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("sentiment.detector").setLevel(logging.WARNING)
    try:
        if args.json is not None:
            check_output(args.json, "--json")
        report = fit_size(
            settings,
            args.input,
            args.truth,
            args.output,
            ages=ages,
            fit_settings=fit_settings,
            folds=args.folds,
            progress=not args.quiet,
            calibrate=args.calibrate,
        )
    except OutputError as exc:  # --output or --json: a folder, under a file, a full disk
        print(f"crisiswatch bench fit-size: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"crisiswatch bench fit-size: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


_OUTPUT_FLAGS = (("output", "--output"), ("replay_output", "--replay-output"), ("json", "--json"))
_READ_FLAGS = (
    ("input", "--input", "input file"),
    ("truth", "--truth", "truth file"),
    ("config", "--config", "config file"),
)


def _overwrites_what_it_reads(args: argparse.Namespace) -> str | None:
    """``replay`` and ``bench``: an output flag naming a file the command reads (its input,
    truth or config), which it would overwrite (a replay's output is written as the input
    is read; ``bench detection --stories N --replay-output`` its input, once read). A
    problem with the command's flags: said in a line, exit 2, before the config loads (as
    ``watches test`` and ``sentiment`` say theirs)."""
    from api.output import is_same_file, is_stdio

    for out_attr, out_flag in _OUTPUT_FLAGS:
        out = getattr(args, out_attr, None)
        if not isinstance(out, Path) or is_stdio(out):
            continue
        for in_attr, in_flag, what in _READ_FLAGS:
            source = getattr(args, in_attr, None)
            if isinstance(source, Path) and not is_stdio(source) and is_same_file(out, source):
                return f"{out_flag} {out} is the {what} ({in_flag}): it would be overwritten"
    return None


def _database_command(settings: Settings, args: argparse.Namespace) -> int:
    """``templates seed`` and ``db upgrade``/``downgrade``: a clear line, not a traceback,
    for a database that is not migrated, an unknown revision or a database that cannot be
    reached."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from api.dbrevision import DatabaseNotMigrated
    from api.seed import SchemaMissing, missing_tables, seed_templates_blocking
    from core.db import (
        MigratedByANewerRelease,
        connection_refused,
        database_unavailable,
        downgrade_database_blocking,
        upgrade_database_blocking,
    )

    url = settings.database.url.get_secret_value()
    seeding = args.command == "templates"
    name = "crisiswatch templates seed" if seeding else f"crisiswatch db {args.db_command}"

    async def at_this_releases_revision() -> None:
        # seeding writes the templates and an audit entry with this release's columns: a
        # database at an older revision failed at the insert (a traceback on PostgreSQL,
        # "cannot reach the database" on SQLite), one at a newer revision was written
        # with a schema this release does not know
        from api.dbrevision import check_database_revision
        from core.db import make_engine

        engine = make_engine(url)
        try:
            await check_database_revision(engine)
        except DatabaseNotMigrated:
            async with engine.connect() as conn:
                if await conn.run_sync(missing_tables):
                    return  # the seed says which tables are missing (SchemaMissing)
            raise
        finally:
            await engine.dispose()

    try:
        if seeding:
            asyncio.run(at_this_releases_revision())
            added = seed_templates_blocking(url)
            names = ", ".join(added) or "none"
            print(f"{len(added)} starter template(s) added as drafts: {names}")
        elif args.db_command == "downgrade":
            downgrade_database_blocking(url, args.revision)
            print(f"database downgraded to {args.revision}")
        else:
            upgrade_database_blocking(url, args.revision)
            print(f"database upgraded to {args.revision}")
    except SchemaMissing as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except (MigratedByANewerRelease, DatabaseNotMigrated) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:  # alembic: an unknown or ambiguous --revision
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except (OSError, SQLAlchemyError) as exc:
        refused = connection_refused(exc)  # no such database, or credentials refused
        if not refused and not database_unavailable(exc):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        what = "the database refused the connection" if refused else "cannot reach the database"
        print(
            f"{name}: {what}: {type(exc).__name__}: {reason[0] if reason else 'no reason given'}",
            file=sys.stderr,
        )
        return 1
    return 0


DATABASE_COMMANDS = (
    "check-config",
    "db",
    "templates",
    "run",
    "listener",
    "detector",
    "alerter",
    "api",
)
"""The commands that may open ``database.url``: an unusable one is refused before they
start (the scorer never opens it)."""


def _check_database_url(url: str) -> None:
    """A ``database.url`` that is not a URL, names an unknown database or a driver that is
    not installed or not asyncio is a configuration error: said in a line, offline, before
    a command needs it (``db upgrade`` and ``run`` failed with a traceback). The URL is not
    echoed: it may hold a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError
    from sqlalchemy.ext.asyncio import create_async_engine

    from api.settings import ConfigError

    example = "postgresql+asyncpg://USER:PASSWORD@HOST/DB or sqlite+aiosqlite:///var/crisiswatch.db"
    try:
        engine = create_async_engine(url)  # loads the dialect and its driver; no connection
    except NoSuchModuleError:
        problem = f"unknown database kind {make_url(url).drivername!r}"
    except ArgumentError:
        problem = "not a database URL"
    except InvalidRequestError:  # a driver without asyncio (sqlite://, postgresql+psycopg2)
        problem = "its driver is not an asyncio one"
    except ImportError as exc:
        problem = f"its driver is not installed ({exc.name or exc})"
    else:
        engine.sync_engine.dispose()
        return
    raise ConfigError(
        f"database.url (the config's database: url, or CRISISWATCH_DATABASE__URL): "
        f"{problem}; use {example}"
    )


def _check_role_bus(command: str, settings: Settings) -> None:
    """A role command runs one stage of the distributed mode: over the in-process bus (the
    default ``bus.kind``, e.g. ``CRISISWATCH_BUS__KIND`` forgotten or misspelt) it would
    start, say it is ready, and exchange nothing with the other processes: refused."""
    from api.settings import ConfigError

    if settings.bus.kind == "kafka":
        return
    raise ConfigError(
        f"bus.kind is {settings.bus.kind!r}: `crisiswatch {command}` runs one stage of the "
        "distributed mode and needs bus.kind: kafka (CRISISWATCH_BUS__KIND=kafka and "
        f"bus.bootstrap_servers); over the in-process bus {BUS_ROLE_COMMANDS[command]}. "
        "To run every stage in one process, use `crisiswatch run`"
    )


def _dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    from api.dead_letters import DeadLetterError, list_letters, redrive
    from api.output import standard_output

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a failure is said in one line
    name = f"crisiswatch dead-letters {args.dead_letters_command}"

    async def audit_log_revision_problem() -> str | None:
        # A redrive's audit entry is written after the publish, with this release's
        # columns: on a database at an older revision (audit_log without ``outcome``) the
        # events went out and the entry failed ("NOT RECORDED"). The other problems (no
        # database, not reachable, no audit_log) are ``audit_ready``'s to say.
        from sqlalchemy import inspect

        from api.dbrevision import DatabaseNotMigrated, check_database_revision
        from core.db import MigratedByANewerRelease, make_engine, sqlite_file

        url = settings.database.url.get_secret_value()
        path = sqlite_file(url)
        if path is not None and not path.is_file():
            return None  # not made by looking
        try:
            engine = make_engine(url)
        except Exception:  # a bad database.url: audit_ready says it
            return None
        try:
            async with engine.connect() as conn:
                if not await conn.run_sync(lambda c: inspect(c).has_table("audit_log")):
                    return None  # never migrated: audit_ready says the table is missing
            await check_database_revision(engine)
        except (DatabaseNotMigrated, MigratedByANewerRelease) as exc:
            return str(exc)
        except Exception:  # not reachable: audit_ready says it
            return None
        finally:
            await engine.dispose()
        return None

    if args.dead_letters_command == "redrive" and not args.dry_run:
        problem = asyncio.run(audit_log_revision_problem())
        if problem is not None:
            print(
                f"{name}: the audit log cannot record a redrive: {problem}; nothing was published",
                file=sys.stderr,
            )
            return 2
    try:
        with standard_output() as out:
            if args.dead_letters_command == "list":
                list_letters(
                    settings,
                    topic=args.topic,
                    since=args.since,
                    limit=args.limit,
                    as_json=args.json,
                    out=out,
                )
            else:
                redrive(settings, topic=args.topic, ids=args.ids, dry_run=args.dry_run, out=out)
    except DeadLetterError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.code
    return 0


def _keys(command: str) -> int:
    from api.auth import MIN_KEY_CHARS, generate_key, hash_key

    if command == "new":
        key = generate_key()
        print(f"key:        {key}\nkey_sha256: {hash_key(key)}")
        print("give the key to its holder; put only key_sha256 in the config", file=sys.stderr)
        return 0
    try:
        if sys.stdin.isatty():
            import getpass

            key = getpass.getpass("API key: ")
        else:
            key = sys.stdin.readline()
        key.encode("utf-8")  # (a stdin decoded with surrogateescape keeps bad bytes)
    except EOFError:  # Ctrl-D at the prompt
        key = ""
    except UnicodeError:
        print("crisiswatch keys hash: the key is not UTF-8 text", file=sys.stderr)
        return 2
    key = key.strip()
    if len(key) < MIN_KEY_CHARS:
        print(f"crisiswatch: API keys must be at least {MIN_KEY_CHARS} characters", file=sys.stderr)
        return 2
    if any((c < " " and c != "\t") or c == "\x7f" for c in key):
        print(
            "crisiswatch keys hash: the key holds a control character, which an HTTP header "
            "cannot carry: it could never authenticate",
            file=sys.stderr,
        )
        return 2
    print(hash_key(key))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from api.settings import ConfigError, InputError

    try:
        code = _dispatch(args)
        sys.stdout.flush()  # (a reader gone shows here, not as a traceback at exit)
        return code
    except ConfigError as exc:  # InputError too: a command's input file, not the config
        what = "input error" if isinstance(exc, InputError) else "configuration error"
        print(f"crisiswatch: {what}\n{exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `crisiswatch check-config … | head`: stop quietly
        from api.output import reader_gone

        return reader_gone()


def _dispatch(args: argparse.Namespace) -> int:
    from api.settings import load_settings

    _setup_logging("WARNING")  # before load_settings, which may warn
    if args.command == "check-config":
        settings = load_settings(args.file)
        _check_database_url(settings.database.url.get_secret_value())
        from api.checks import describe

        print(describe(settings, args.file))
        return 0

    if args.command == "watches":  # loads its --config itself (a bad query: ConfigError)
        from api.watch_test import run as run_watches

        return run_watches(args)
    if args.command == "keys":  # needs no settings
        return _keys(args.keys_command)
    if args.command == "sentiment":
        from api.sentiment_cli import run as run_sentiment

        _setup_logging("WARNING")
        return run_sentiment(args)

    if args.command in ("replay", "bench"):
        problem = _overwrites_what_it_reads(args)
        if problem is not None:
            name = " ".join(filter(None, (args.command, getattr(args, "bench_command", None))))
            print(f"crisiswatch {name}: {problem}", file=sys.stderr)
            return 2
    overrides: dict[str, object] = {}
    if args.command == "bench" and args.bench_command == "fit-size":
        # fitting reads the detector's windows, not its predictor: a config naming the
        # model being rebuilt (or one fitted on other windows) loads all the same
        overrides["detector"] = {"predictor": "power_law", "level_predictor": None}
    settings = load_settings(getattr(args, "config", None), **overrides)
    if args.command in DATABASE_COMMANDS:
        _check_database_url(settings.database.url.get_secret_value())
    if args.command in BUS_ROLE_COMMANDS:
        _check_role_bus(args.command, settings)
    _setup_logging(settings.log_level)

    if args.command in ("templates", "db"):
        return _database_command(settings, args)

    if args.command == "dead-letters":
        return _dead_letters(settings, args)

    if args.command in ("replay", "bench"):  # long jobs through the pipeline's stages
        from api.collector import tune_collector

        tune_collector(settings.gc_young_threshold)

    if args.command == "replay":
        from api.replay import ReplayError, run_replay

        if settings.log_level != "DEBUG":  # a month of stories: keep per-story chatter out
            logging.getLogger("sentiment.detector").setLevel(logging.WARNING)

        try:
            summary = asyncio.run(
                run_replay(
                    settings,
                    args.input,
                    args.output,
                    limit=args.limit,
                    progress=not args.quiet,
                    config_given=args.config is not None,
                    forecast_at=args.forecast_at,
                    require_mentions=True,
                )
            )
        except ReplayError as exc:
            print(f"crisiswatch replay: {exc}", file=sys.stderr)
            return 1
        print(summary.render(), file=sys.stderr)
        return 0

    if args.command == "backfill":
        from api.backfill import BackfillError, parse_duration, run_backfill

        try:
            count = asyncio.run(
                run_backfill(
                    settings,
                    args.watch,
                    parse_duration(args.since),
                    args.output,
                    progress=not args.quiet,
                )
            )
        except BackfillError as exc:
            print(f"crisiswatch backfill: {exc}", file=sys.stderr)
            return 2
        print(f"backfill: {count} mentions written to {args.output}", file=sys.stderr)
        return 0
    if args.command == "bench" and args.bench_command == "fit-size":
        return _fit_size(settings, args)
    if args.command == "bench":
        import json

        from api.bench import bench_detection, render
        from api.fit_size import check_output
        from api.output import OutputError
        from api.replay import ReplayError

        name = "crisiswatch bench detection"
        try:  # outputs that cannot be written: refused before the run, not after it
            if args.json is not None:
                check_output(args.json, "--json")
            if args.replay_output is not None and not args.detector_only:
                check_output(args.replay_output, "--replay-output")
                if args.replay_output.exists() and not args.replay_output.is_file():
                    # a device or a pipe: the bench reads the replay's lines back from it
                    raise OutputError(
                        f"--replay-output {args.replay_output} is not a regular file: the "
                        "bench reads the replay's output back from it"
                    )
        except OutputError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        logging.getLogger("sentiment.detector").setLevel(logging.WARNING)
        try:
            result = bench_detection(
                settings,
                args.input,
                args.truth,
                stories=args.stories,
                detector_only=args.detector_only,
                replay_output=args.replay_output,
                progress=not args.quiet,
                config_given=args.config is not None,
            )
        except ReplayError as exc:  # as `crisiswatch replay` says it (was a traceback)
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        print(render(result))
        if args.json is not None:
            try:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                print(f"{name}: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
                return 2
        return 0

    from api.serve import serve_roles

    if args.command == "run":
        demo = args.demo or args.config is None
        return serve_roles(settings, roles=None, demo=demo, host=args.host, port=args.port)
    return serve_roles(settings, roles=(args.command,), demo=False, host=args.host, port=args.port)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
