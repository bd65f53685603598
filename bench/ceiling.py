"""The ingest ceilings: bare aiohttp endpoints that parse the same JSON and answer 202.

``python -m bench.ceiling --port N [--database URL]``; started by :mod:`bench.ingest`.

Without ``--database`` it serves ``POST /v1/notifications`` that parses the body and answers 202
with a small JSON object: no middleware, database or policy, what aiohttp itself costs per
request on this machine.

With ``--database`` (``sqlite:///path`` or ``postgresql://...``) the endpoint also stores each
request durably before answering, the way pushgate does (one writer, everything waiting in one
transaction, one ``executemany`` and one commit), with the raw driver pushgate uses (aiosqlite
or asyncpg) and no ORM: what aiohttp plus the database cost, so the gateway's own share (auth,
validation, policy, SQLAlchemy) can be read off the difference.

Both serve ``GET /readyz`` and exit on SIGTERM, or on their own after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

CREATE = (
    "CREATE TABLE IF NOT EXISTS accepted "
    "(id TEXT PRIMARY KEY, user_id TEXT, payload TEXT, created_at TEXT)"
)
INSERT_SQLITE = "INSERT INTO accepted VALUES (?, ?, ?, ?)"
INSERT_POSTGRES = "INSERT INTO accepted VALUES ($1, $2, $3, $4)"
Store = Callable[[Sequence[tuple[str, str, str, str]]], Awaitable[None]]


class GroupCommit:
    """Requests wait in a queue; one writer stores all that wait with one ``store`` call."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: asyncio.Queue[tuple[tuple[str, str, str, str], asyncio.Future[None]]]
        self.queue = asyncio.Queue()

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < 64 and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self.store([row for row, _ in batch])
            for _, done in batch:
                done.set_result(None)

    async def put(self, row: tuple[str, str, str, str]) -> None:
        done = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, done))
        await done


async def sqlite_store(path: str, stack: contextlib.AsyncExitStack) -> Store:
    import aiosqlite  # noqa: PLC0415

    db = await stack.enter_async_context(aiosqlite.connect(path))
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute(CREATE)
    await db.commit()

    async def store(rows: Sequence[tuple[str, str, str, str]]) -> None:
        await db.executemany(INSERT_SQLITE, rows)
        await db.commit()

    return store


async def postgres_store(url: str, stack: contextlib.AsyncExitStack) -> Store:
    import asyncpg  # noqa: PLC0415

    # the benchmarks' URLs are SQLAlchemy's: postgresql+asyncpg://...?search_path=schema
    parts = urlsplit(url.replace("+asyncpg", "", 1))
    search_path = parse_qs(parts.query).get("search_path")
    connection = await asyncpg.connect(
        parts._replace(query="").geturl(),
        server_settings={"search_path": search_path[0]} if search_path else None,
    )
    stack.push_async_callback(connection.close)
    await connection.execute(CREATE)

    async def store(rows: Sequence[tuple[str, str, str, str]]) -> None:
        async with connection.transaction():
            await connection.executemany(INSERT_POSTGRES, rows)

    return store


async def serve(port: int, max_seconds: float, database: str | None) -> None:
    app = web.Application()
    async with contextlib.AsyncExitStack() as stack:
        writer: GroupCommit | None = None
        if database is not None:
            if database.startswith("sqlite"):
                store = await sqlite_store(database.split(":///", 1)[1], stack)
            else:
                store = await postgres_store(database, stack)
            writer = GroupCommit(store)
            task = asyncio.create_task(writer.run())
            stack.callback(task.cancel)

        async def accept(request: web.Request) -> web.Response:
            body: dict[str, Any] = await request.json()
            notification_id = uuid.uuid4().hex
            if writer is not None:
                created_at = datetime.now(UTC).isoformat()
                user_id = str(body.get("user_id"))
                await writer.put((notification_id, user_id, json.dumps(body), created_at))
            return web.json_response(
                {"id": notification_id, "user_id": body.get("user_id"), "status": "queued"},
                status=202,
            )

        async def ready(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

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
    parser.add_argument("--database", help="sqlite:///path or postgresql://...: store each request")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_seconds, args.database))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
