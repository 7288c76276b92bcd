"""The ``trio-sync`` command: serve, token, ingest, rejects, migrate, demo."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import trio

from . import __version__
from .config import AUTH_MODES, Config, ConfigError, load_config, parse_listen
from .errors import StorageError, sole_exception
from .ingest import Ingestor
from .ingest.runner import current_token
from .notifier import Notifier
from .observability.logs import configure_logging
from .progress import ProgressBar
from .service import open_service
from .sources.file import follow_file
from .storage import open_engine
from .storage.accounts import (
    add_device,
    device_exists,
    list_devices,
    new_token,
    remove_device,
    remove_device_of_token,
    token_owner,
    validate_device_ids,
)
from .storage.migrations import migrate
from .storage.rejects import count_rejects, recent_rejects

log = logging.getLogger("trio_sync")

DESCRIPTION = (
    "A Matrix /sync server: follows a homeserver's room-server output log, keeps what "
    "clients need in SQLite or PostgreSQL, and serves /sync to Matrix clients."
)
EPILOG = (
    "Every setting can also come from a TOML config file (--config) or a TRIO_SYNC_<NAME> "
    "environment variable; the command line wins over both. Run 'trio-sync COMMAND --help' "
    "for a command's options."
)


class UsageError(Exception):
    """A command-line mistake found before anything was created."""


async def _until_signalled(*announce: str) -> None:
    """Print the ``announce`` lines, then wait for SIGINT or SIGTERM. The signals are
    caught before the lines are printed, so a signal sent on seeing them stops the
    command gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        for text in announce:
            print(text, flush=True)
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return


def check_bindable(setting: str, address: str) -> None:
    """UsageError unless ``address`` (HOST:PORT) can be listened on now."""
    host, port = parse_listen(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--{setting} {address}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise UsageError(
                f"--{setting} {address}: cannot listen there ({exc.strerror})"
            ) from None


#: Allocations (net of frees) between two young garbage collections in ``serve``.
GC_YOUNG_THRESHOLD = 7000


async def serve_main(config: Config) -> None:
    """``trio-sync serve``: run until SIGINT/SIGTERM, then stop gracefully."""
    async with open_service(config) as service:
        # Everything allocated at start-up lives as long as the process: keep it out of
        # the collector's full passes, whose pauses otherwise delay long-poll wake-ups.
        gc.collect()
        gc.freeze()
        # Young collections ten times rarer than CPython's default (700 allocations): one
        # event answering a thousand parked polls then runs about ten of them instead of
        # a hundred, and seldom promotes enough objects to set off a full pass in the
        # middle of the burst. Cyclic garbage waits a few thousand allocations longer.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        announce = [f"trio-sync listening on {', '.join(service.addresses)}"]
        if service.metrics_addresses:
            announce.insert(0, f"trio-sync metrics on {', '.join(service.metrics_addresses)}")
        await _until_signalled(*announce)


async def token_add(
    config: Config, user_id: str, device_id: str, token: str | None, session_id: int | None
) -> None:
    async with open_engine(config.database) as engine:
        token = token or new_token()
        owner = await engine.read(token_owner, token)
        if owner is not None and owner != (user_id, device_id):
            raise UsageError(f"--token is already the token of {owner[0]} device {owner[1]}")
        if await engine.read(device_exists, user_id, device_id):
            print(
                f"{user_id} device {device_id} was registered: its previous token stops working",
                file=sys.stderr,
            )
        await engine.write(add_device, user_id, device_id, token, session_id)
    print(token)


async def token_list(config: Config, user_id: str | None) -> None:
    async with open_engine(config.database) as engine:
        devices = await engine.read(list_devices, user_id)
    for d in devices:
        created = utc_time(d.created_at)
        print(f"{d.user_id}\t{d.device_id}\tcreated {created}")
    if not devices:
        print("no devices" + (f" for {user_id}" if user_id else ""), file=sys.stderr)


def utc_time(ms: int) -> str:
    """A stored millisecond timestamp as UTC ISO 8601."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def token_revoke(
    config: Config, token: str | None, user_id: str | None, device_id: str | None
) -> None:
    async with open_engine(config.database) as engine:
        if token is not None:
            owner = await engine.write(remove_device_of_token, token)
            if owner is None:
                raise UsageError("no device has this token")
            user_id, device_id = owner
        else:
            assert user_id is not None and device_id is not None
            if not await engine.write(remove_device, user_id, device_id):
                raise UsageError(f"{user_id} has no device {device_id}")
    print(f"revoked the token of {user_id} device {device_id}")


async def ingest_main(config: Config, path: str, quiet: bool) -> int:
    """``trio-sync ingest PATH``: replay a log file once from its stored offset.

    Returns the exit status: 1 when every message of the file was rejected.
    """
    bar = ProgressBar(sys.stderr) if not quiet else None
    async with open_engine(config.database) as engine, trio.open_nursery() as nursery:
        ingestor = Ingestor(engine, Notifier(await engine.read(current_token)))
        await nursery.start(ingestor.run)
        try:
            total = await follow_file(
                path, ingestor, follow=False, batch_lines=config.batch_size, progress=bar
            )
        finally:
            if bar is not None:
                bar.finish()
        token = await engine.read(current_token)
        nursery.cancel_scope.cancel()
    print(
        f"ingested {path}: {total.accepted} applied, {total.duplicates} duplicates, "
        f"{total.rejected} rejected; now at {token}"
    )
    if total.rejected:
        print("see them with: trio-sync rejects", file=sys.stderr)
    if total.rejected and not total.accepted and not total.duplicates:
        print(f"trio-sync: every message of {path} was rejected", file=sys.stderr)
        return 1
    return 0


async def rejects_main(config: Config, limit: int) -> None:
    async with open_engine(config.database) as engine:
        rejects = await engine.read(recent_rejects, limit)
        total = await engine.read(count_rejects)
    for r in rejects:
        head = r.head.decode("utf-8", "replace")
        more = f"… ({r.size} bytes)" if r.size > len(r.head) else ""
        print(f"{utc_time(r.rejected_at)}  {r.source}  offset {r.offset}")
        print(f"    reason: {r.reason}")
        print(f"    message: {head}{more}")
    shown = f"{len(rejects)} of {total}" if total > len(rejects) else f"{total}"
    print(f"{shown} rejected message(s)", file=sys.stderr)


async def migrate_main(config: Config) -> None:
    async with open_engine(config.database, apply_migrations=False) as engine:
        applied = await migrate(engine)
        print(f"applied migrations {applied}" if applied else "schema up to date")


async def demo_main(config: Config) -> None:
    """``trio-sync demo``: a fresh SQLite database, a demo community, a ready curl line.
    The database's temporary directory is removed when the demo stops."""
    from .demo import demo_community

    workdir = tempfile.mkdtemp(prefix="trio-sync-demo-")
    try:
        config = Config(
            database=f"sqlite:///{os.path.join(workdir, 'demo.db')}",
            listen=config.listen,
            server_name="demo.example",
            access_log=config.access_log,
            log_format=config.log_format,
        )
        messages, users = demo_community(config.server_name)
        async with open_service(config) as service:
            applied = await service.ingest(messages)
            tokens = {u: await service.add_device(u, "DEMO") for u in users}
            base = service.addresses[0]
            alice = users[0]
            print(f"trio-sync demo: {applied.accepted} log messages ingested into {workdir}")
            print(f"listening on {base}")
            for user, token in tokens.items():
                print(f"  {user}  access token: {token}")
            print("\nTry:")
            print(
                f"  curl -s -H 'Authorization: Bearer {tokens[alice]}' "
                f"'{base}/_matrix/client/v3/sync'"
            )
            await _until_signalled("\nCtrl-C to stop (the demo database is then deleted).")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line (plus where to get help), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


#: Every setting's help text and argparse options (its flag is --name-with-dashes).
_SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "database": (
        "sqlite:///PATH (relative), sqlite:////PATH (absolute) or "
        "postgresql://USER@HOST:PORT/DB (default sqlite:///trio-sync.db)",
        {"metavar": "URL"},
    ),
    "listen": (
        "address the HTTP server listens on (default 127.0.0.1:8008)",
        {"metavar": "HOST:PORT"},
    ),
    "server_name": (
        "this homeserver's name: token add accepts only its users (default localhost)",
        {"metavar": "NAME"},
    ),
    "log": (
        "JSON-lines room-server output log to follow, also across rotation",
        {"metavar": "PATH"},
    ),
    "ingest_secret": (
        "bearer secret for POST /_trio_sync/v1/ingest; push is disabled without it",
        {"metavar": "SECRET"},
    ),
    "graceful_timeout": (
        "seconds HTTP may take to drain at shutdown (default 10)",
        {"type": float, "metavar": "SECONDS"},
    ),
    "keep_alive_timeout": (
        "seconds an idle keep-alive connection is kept (default 30)",
        {"type": float, "metavar": "SECONDS"},
    ),
    "batch_size": (
        "log messages per ingest transaction (default 500)",
        {"type": int, "metavar": "N"},
    ),
    "follow_poll_interval": (
        "seconds between looks at a followed log that has not grown (default 0.2)",
        {"type": float, "metavar": "SECONDS"},
    ),
    "homeserver_database": (
        "the homeserver's PostgreSQL database, read only (postgresql://...)",
        {"metavar": "URL"},
    ),
    "jetstream": (
        "NATS server the homeserver (Dendrite) publishes its output streams to: consume them",
        {"metavar": "nats://HOST:PORT"},
    ),
    "jetstream_prefix": (
        "the streams' name prefix, Dendrite's global.jetstream.topic_prefix (default Dendrite)",
        {"metavar": "PREFIX"},
    ),
    "homeserver_url": (
        "the homeserver's client API base URL (whoami auth; its /versions is merged in)",
        {"metavar": "URL"},
    ),
    "auth": (
        "who checks access tokens: local (token add), homeserver-database, whoami",
        {"choices": AUTH_MODES},
    ),
    "local_writes": (
        "with a JetStream source, still accept typing, receipts, account data, presence, "
        "to-device here",
        {"action": "store_const", "const": True},
    ),
    "access_log": (
        "log one line per HTTP request (method, path, status, duration, user); "
        "--no-access-log turns it off when a config file turns it on",
        {"action": argparse.BooleanOptionalAction},
    ),
    "metrics_listen": (
        "address serving only /metrics and /health; /metrics then leaves the main listener",
        {"metavar": "HOST:PORT"},
    ),
}


def _settings(parser: argparse.ArgumentParser, *names: str) -> None:
    group = parser.add_argument_group("settings")
    for name in names:
        text, options = _SETTINGS[name]
        group.add_argument("--" + name.replace("_", "-"), dest=name, help=text, **options)


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (SUPPRESS: only set when given)."""
    common = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    common.add_argument(
        "--config", metavar="PATH", default=s, help="TOML config file (also TRIO_SYNC_CONFIG)"
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=s,
        help="debug logging (ingest batches, wake-ups)",
    )
    common.add_argument(
        "--log-format",
        dest="log_format",
        choices=("text", "json"),
        default=s,
        help="text lines (default), or one JSON object per line",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(prog="trio-sync", description=DESCRIPTION, epilog=EPILOG, parents=[common])
    parser.add_argument("--version", action="version", version=f"trio-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            name, help=text, description=text, parents=[common]
        )
        return p

    serve = command("serve", "run the sync server until SIGINT or SIGTERM")
    _settings(serve, *_SETTINGS)

    token = command("token", "manage devices and their access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    add = command("add", "register a device and print its new access token", token_sub)
    add.add_argument("user_id", metavar="USER_ID", help="a local user, @localpart:SERVER_NAME")
    add.add_argument("device_id", metavar="DEVICE_ID", help="the device's ID, e.g. PHONE")
    add.add_argument("--token", help="use this token instead of a random one")
    add.add_argument(
        "--session-id",
        dest="session_id",
        type=int,
        metavar="N",
        help="the homeserver's session of the device (for unsigned.transaction_id)",
    )
    _settings(add, "database", "server_name")
    listing = command("list", "list registered devices (tokens are stored hashed)", token_sub)
    listing.add_argument("user", nargs="?", metavar="USER_ID", help="only this user's devices")
    _settings(listing, "database")
    revoke = command("revoke", "revoke a token: its device is removed", token_sub)
    revoke.add_argument("token", nargs="?", metavar="TOKEN", help="the token to revoke")
    revoke.add_argument("--user", metavar="USER_ID", help="with --device: revoke by device")
    revoke.add_argument("--device", metavar="DEVICE_ID", help="with --user: revoke by device")
    _settings(revoke, "database")

    ingest = command("ingest", "replay a JSON-lines log file once (safe to re-run)")
    ingest.add_argument("path", metavar="PATH", help="the log file")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    _settings(ingest, "database", "batch_size")

    rejects = command("rejects", "list quarantined log messages, most recent last")
    rejects.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show at most N (default 20)"
    )
    _settings(rejects, "database")

    migrate_p = command("migrate", "apply database migrations (also done at every start)")
    _settings(migrate_p, "database")

    demo = command("demo", "serve a demo community on a temporary SQLite database")
    _settings(demo, "listen", "access_log")
    return parser


def _check_args(args: argparse.Namespace, config: Config) -> None:
    """What can be found wrong before anything is created."""
    if args.command == "serve" and config.listen:
        check_bindable("listen", config.listen)
    if args.command == "serve" and config.metrics_listen:
        check_bindable("metrics-listen", config.metrics_listen)
    if args.command == "demo" and config.listen:
        check_bindable("listen", config.listen)
    if args.command == "ingest" and not os.path.isfile(args.path):
        what = "is not a file" if os.path.exists(args.path) else "does not exist"
        raise UsageError(f"log file {args.path} {what}")
    if args.command == "rejects" and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.command == "token" and args.token_command == "add":
        try:
            validate_device_ids(args.user_id, args.device_id, config.server_name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.command == "token" and args.token_command == "revoke":
        by_device = args.user is not None or args.device is not None
        if (args.token is None) == (not by_device) or (
            by_device and (args.user is None or args.device is None)
        ):
            raise UsageError("give either TOKEN or both --user and --device")


def _run(args: argparse.Namespace, config: Config) -> int:
    if args.command == "serve":
        trio.run(serve_main, config)
    elif args.command == "token" and args.token_command == "add":
        trio.run(token_add, config, args.user_id, args.device_id, args.token, args.session_id)
    elif args.command == "token" and args.token_command == "list":
        trio.run(token_list, config, args.user)
    elif args.command == "token":
        trio.run(token_revoke, config, args.token, args.user, args.device)
    elif args.command == "ingest":
        return trio.run(ingest_main, config, args.path, args.quiet)
    elif args.command == "rejects":
        trio.run(rejects_main, config, args.limit)
    elif args.command == "migrate":
        trio.run(migrate_main, config)
    elif args.command == "demo":
        trio.run(demo_main, config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cli = {name: getattr(args, name, None) for name in (*_SETTINGS, "log_format")}
    if args.command == "demo" and cli["listen"] is None:
        cli["listen"] = "127.0.0.1:8008"
    try:
        config = load_config(cli, config_file=getattr(args, "config", None))
        configure_logging(
            verbose=getattr(args, "verbose", False), json_lines=config.log_format == "json"
        )
        _check_args(args, config)
        return _run(args, config)
    except BaseException as raised:
        exc = sole_exception(raised)
        if isinstance(exc, UsageError | ConfigError | StorageError | OSError | ValueError):
            print(f"trio-sync: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
