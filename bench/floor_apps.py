"""The floors `bench/floor.py` measures against, served under trio-sync's own Hypercorn
configuration (``trio_sync.service.hypercorn_config``):

    python bench/floor_apps.py bare|quart PORT

``bare``: a plain ASGI callable answering every request with a small JSON body (the cost of
Hypercorn, h11 and Trio alone), except ``GET /park``, which waits as a parked ``/sync``
does (reading its client's messages, so a disconnect ends it, in a cancel scope) until
``POST /wake``, then answers 1 KiB. ``quart``: a Quart-Trio app with ``GET /small`` (a small
JSON body), ``GET /park`` (waits until ``POST /wake``, then answers 1 KiB) and
``POST /wake``. Prints ``listening`` once bound; runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import trio
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from trio_sync.config import Config
from trio_sync.service import hypercorn_config

SMALL = b'{"ok":true}'
KIB = b'{"pad":"' + b"x" * (1024 - 10) + b'"}'


_parked: set[trio.CancelScope] = set()


async def bare_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = SMALL
    if scope["path"] == "/park":
        with trio.CancelScope() as parked:
            _parked.add(parked)
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
                return  # the client went away
            finally:
                _parked.discard(parked)
        body = KIB
    elif scope["path"] == "/wake":
        for parked in list(_parked):
            parked.cancel()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def quart_app() -> QuartTrio:
    app = QuartTrio("floor")
    app.config["RESPONSE_TIMEOUT"] = None
    wake = [trio.Event()]

    @app.get("/small")
    async def small() -> Response:
        return Response(SMALL, content_type="application/json")

    @app.get("/park")
    async def park() -> Response:
        await wake[0].wait()
        return Response(KIB, content_type="application/json")

    @app.post("/wake")
    async def do_wake() -> Response:
        event, wake[0] = wake[0], trio.Event()
        event.set()
        return Response(SMALL, content_type="application/json")

    return app


async def main(kind: str, port: int) -> None:
    config = hypercorn_config(Config(listen=f"127.0.0.1:{port}"))
    app: Any = bare_app if kind == "bare" else quart_app()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, app, config)
        print("listening", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("bare", "quart") or not sys.argv[2].isdigit():
        print("usage: floor_apps.py bare|quart PORT", file=sys.stderr)
        sys.exit(2)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1], int(sys.argv[2]))
