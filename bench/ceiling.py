"""The ingest ceiling: a bare aiohttp endpoint that parses the same JSON and answers 202.

``python -m bench.ceiling --port N``; started by :mod:`bench.ingest`. It serves
``POST /v1/notifications`` (parse the body, answer 202 with a small JSON object) and
``GET /readyz``, with no middleware, database or policy: what aiohttp itself costs per request
on this machine, so the real app's figures can be read as a fraction of it. It exits on SIGTERM,
or on its own after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response(
        {"id": uuid.uuid4().hex, "user_id": body.get("user_id"), "status": "queued"}, status=202
    )


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(port: int, max_seconds: float) -> None:
    app = web.Application()
    app.router.add_post("/v1/notifications", accept)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
