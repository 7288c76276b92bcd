"""The ``trio-sync`` command: serve, token add, ingest, demo, migrate."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import trio

from .config import AUTH_MODES, Config, load_config
from .errors import StorageError, sole_exception
from .ingest import Ingestor, follow_file
from .ingest.runner import current_token
from .notifier import Notifier
from .service import open_service
from .storage import open_engine
from .storage.accounts import add_device, new_token, remove_device
from .storage.migrations import migrate

log = logging.getLogger("trio_sync")


async def _until_signalled() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return


async def serve_main(config: Config) -> None:
    """``trio-sync serve``: run until SIGINT/SIGTERM, then stop gracefully."""
    async with open_service(config) as service:
        # Everything allocated at start-up lives as long as the process: keep it out of
        # the collector's full passes, whose pauses otherwise delay long-poll wake-ups.
        gc.collect()
        gc.freeze()
        print(f"trio-sync listening on {', '.join(service.addresses)}", flush=True)
        await _until_signalled()


async def token_main(config: Config, user_id: str, device_id: str, token: str | None) -> None:
    async with open_engine(config.database) as engine:
        token = token or new_token()
        await engine.write(add_device, user_id, device_id, token)
    print(token)


async def revoke_main(config: Config, user_id: str, device_id: str) -> None:
    async with open_engine(config.database) as engine:
        removed = await engine.write(remove_device, user_id, device_id)
    if not removed:
        raise ValueError(f"no device {device_id} of {user_id}")
    print(f"revoked {user_id} {device_id}")


def _progress_bar(done: int, total: int) -> None:
    width = 40
    frac = done / total if total else 1.0
    bar = "#" * int(frac * width)
    sys.stderr.write(f"\r[{bar:<{width}}] {frac:6.1%} {done}/{total} bytes")
    sys.stderr.flush()


async def ingest_main(config: Config, path: str, quiet: bool) -> None:
    """``trio-sync ingest PATH``: replay a log file once from its stored offset."""
    async with open_engine(config.database) as engine, trio.open_nursery() as nursery:
        ingestor = Ingestor(engine, Notifier(await engine.read(current_token)))
        await nursery.start(ingestor.run)
        await follow_file(
            path,
            ingestor,
            follow=False,
            batch_lines=config.batch_size,
            progress=None if quiet else _progress_bar,
        )
        if not quiet:
            sys.stderr.write("\n")
        token = await engine.read(current_token)
        print(f"ingested {path}: now at {token}")
        nursery.cancel_scope.cancel()


async def migrate_main(config: Config) -> None:
    async with open_engine(config.database, apply_migrations=False) as engine:
        applied = await migrate(engine)
        print(f"applied migrations {applied}" if applied else "schema up to date")


async def demo_main(listen: str) -> None:
    """``trio-sync demo``: a fresh SQLite database, a demo community, a ready curl line."""
    from .demo import demo_community

    workdir = tempfile.mkdtemp(prefix="trio-sync-demo-")
    config = Config(
        database=f"sqlite:///{os.path.join(workdir, 'demo.db')}",
        listen=listen,
        server_name="demo.example",
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
            f"  curl -s -H 'Authorization: Bearer {tokens[alice]}' '{base}/_matrix/client/v3/sync'"
        )
        print("\nCtrl-C to stop.", flush=True)
        await _until_signalled()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trio-sync", description=__doc__)
    parser.add_argument("--config", help="TOML config file (also TRIO_SYNC_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def db(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database", help="sqlite:///PATH or postgresql://... (TRIO_SYNC_DATABASE)")

    serve = sub.add_parser("serve", help="run the sync server")
    db(serve)
    serve.add_argument("--listen", help="HOST:PORT (default 127.0.0.1:8008)")
    serve.add_argument("--server-name", dest="server_name")
    serve.add_argument("--log", help="JSON-lines room-server output log to follow")
    serve.add_argument("--ingest-secret", dest="ingest_secret", help="enables HTTP ingest push")
    serve.add_argument(
        "--homeserver-database",
        dest="homeserver_database",
        help="the homeserver's PostgreSQL database, read only (postgresql://...)",
    )
    serve.add_argument(
        "--homeserver-url", dest="homeserver_url", help="the homeserver's client API base URL"
    )
    serve.add_argument(
        "--auth",
        choices=AUTH_MODES,
        help="who checks access tokens (default local: tokens made with 'token add')",
    )
    serve.add_argument(
        "--local-writes",
        dest="local_writes",
        action="store_true",
        default=None,
        help="with a JetStream source, still accept typing/receipts/account data/... here",
    )

    token = sub.add_parser("token", help="manage access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    add = token_sub.add_parser("add", help="register a device and print its access token")
    add.add_argument("user_id")
    add.add_argument("device_id")
    add.add_argument("--token", help="use this token instead of a random one")
    db(add)
    revoke = token_sub.add_parser("revoke", help="delete a device: its token stops working")
    revoke.add_argument("user_id")
    revoke.add_argument("device_id")
    db(revoke)

    ingest = sub.add_parser("ingest", help="replay a JSON-lines log file once (safe to re-run)")
    ingest.add_argument("path")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    db(ingest)

    demo = sub.add_parser("demo", help="serve a demo community on a fresh SQLite database")
    demo.add_argument("--listen", default="127.0.0.1:8008")

    migrate_p = sub.add_parser("migrate", help="apply database migrations")
    db(migrate_p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cli: dict[str, Any] = {
        k: getattr(args, k, None)
        for k in (
            "database",
            "listen",
            "server_name",
            "log",
            "ingest_secret",
            "homeserver_database",
            "homeserver_url",
            "auth",
            "local_writes",
        )
    }
    try:
        config = load_config(cli, config_file=args.config)
        if args.command == "serve":
            trio.run(serve_main, config)
        elif args.command == "token" and args.token_command == "revoke":
            trio.run(revoke_main, config, args.user_id, args.device_id)
        elif args.command == "token":
            trio.run(token_main, config, args.user_id, args.device_id, args.token)
        elif args.command == "ingest":
            trio.run(ingest_main, config, args.path, args.quiet)
        elif args.command == "migrate":
            trio.run(migrate_main, config)
        elif args.command == "demo":
            trio.run(demo_main, args.listen)
    except BaseException as raised:
        exc = sole_exception(raised)
        if isinstance(exc, StorageError | OSError | ValueError):
            print(f"trio-sync: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
