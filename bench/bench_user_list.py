"""A page of ``GET /v1/users/{user_id}/notifications`` in a table of a million notifications.

Run from the repository root::

    .venv/bin/python -m bench.bench_user_list                  # 1,000,000 rows, both databases
    .venv/bin/python -m bench.bench_user_list --rows 200000 --database sqlite

The table is filled in the database itself (a recursive CTE on SQLite, ``generate_series`` on
PostgreSQL), the way years of traffic leave it: about 10,000 users with a hundred notifications
each, and one long-standing user with a hundredth of all of them (10,000 at a million rows),
spread over two apps and three statuses. Then, through :class:`NotificationService` (what the
endpoint calls: query, ORM rows, response models), that user's pages are read: the first, one
a hundred pages deep (reached with the cursor, as a client would), a status-filtered one, and
the first page for a key limited to one app. For contrast, the deep page is also read the way
keyset pagination avoids, with OFFSET. Each is the median of ``--repeat`` reads, with the
database's own plan for the keyset query. Results go to ``bench/results/user_list.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from bench.stack import RESULTS, make_settings, postgres_available, postgres_schema, sqlite_url
from gateway.db import create_engine, session_factory, upgrade_database
from gateway.models import Notification
from gateway.runtime import Role, build_runtime
from gateway.schemas import UserNotificationsQuery
from gateway.services.access import Caller
from gateway.services.notifications import NotificationService
from gateway.services.pagination import decode_cursor
from policies.tiers import Tier
from tokens.models import UTCDateTime

HEAVY_USER = "long-standing-user"
PAGE = 50
DEEP_PAGES = 100
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# One row per n: the heavy user gets every hundredth, the rest go round 10,007 users. Apps and
# statuses follow n / 100, so the heavy user has the same mix as everyone: a seventh for the
# second app, a tenth deferred, a tenth dropped, the rest sent.
_SQLITE_FILL = """
WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < :rows - 1)
INSERT INTO notifications (id, user_id, app, tier, classified_by, status, reason, title,
                           sender, expires_at, created_at, updated_at)
SELECT printf('%08d-0000-4000-8000-000000000000', n),
       CASE WHEN n % 100 = 0 THEN :heavy ELSE 'user-' || (n % 10007) END,
       CASE WHEN (n / 100) % 7 = 0 THEN 'other' ELSE 'demo' END,
       'behavioral', 'tier',
       CASE (n / 100) % 10 WHEN 8 THEN 'dropped' WHEN 9 THEN 'deferred' ELSE 'sent' END,
       CASE (n / 100) % 10 WHEN 8 THEN 'opted_out' WHEN 9 THEN 'quiet_hours' ELSE NULL END,
       'Your cart', 'bench',
       datetime(:base, '+' || (n + 86400) || ' seconds') || '.000000',
       datetime(:base, '+' || n || ' seconds') || '.000000',
       datetime(:base, '+' || n || ' seconds') || '.000000'
FROM seq
"""
_POSTGRES_FILL = """
INSERT INTO notifications (id, user_id, app, tier, classified_by, status, reason, title,
                           sender, expires_at, created_at, updated_at)
SELECT lpad(n::text, 8, '0') || '-0000-4000-8000-000000000000',
       CASE WHEN n % 100 = 0 THEN :heavy ELSE 'user-' || (n % 10007) END,
       CASE WHEN (n / 100) % 7 = 0 THEN 'other' ELSE 'demo' END,
       'behavioral', 'tier',
       CASE (n / 100) % 10 WHEN 8 THEN 'dropped' WHEN 9 THEN 'deferred' ELSE 'sent' END,
       CASE (n / 100) % 10 WHEN 8 THEN 'opted_out' WHEN 9 THEN 'quiet_hours' ELSE NULL END,
       'Your cart', 'bench',
       CAST(:base AS timestamptz) + (n + 86400) * interval '1 second',
       CAST(:base AS timestamptz) + n * interval '1 second',
       CAST(:base AS timestamptz) + n * interval '1 second'
FROM generate_series(0, :rows - 1) AS n
"""


async def fill(engine: Any, rows: int) -> float:
    """Fill the table; returns the seconds it took (statistics included)."""
    started = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    base: Any = BASE.strftime("%Y-%m-%d %H:%M:%S") if sqlite else BASE
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(_SQLITE_FILL if sqlite else _POSTGRES_FILL),
            {"rows": rows, "heavy": HEAVY_USER, "base": base},
        )
    async with engine.begin() as connection:
        await connection.execute(sa.text("ANALYZE" if sqlite else "ANALYZE notifications"))
    return time.perf_counter() - started


async def timed(read: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    await read()  # warm: the first read pays for caches, not for the query
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await read()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "median_ms": statistics.median(samples),
        "p95_ms": samples[min(len(samples) - 1, int(len(samples) * 0.95))],
    }


async def plan(engine: Any, cursor: str) -> list[str]:
    """The database's plan for the keyset query of a deep page."""
    created, row_id = decode_cursor(cursor)
    statement = (
        select(Notification)
        .where(
            col(Notification.user_id) == HEAVY_USER,
            sa.tuple_(col(Notification.created_at), col(Notification.id))
            < sa.tuple_(sa.literal(created, UTCDateTime()), sa.literal(row_id)),
        )
        .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
        .limit(PAGE + 1)
    )
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.text(prefix + str(compiled)))).all()
    return [" ".join(str(part) for part in row) for row in rows]


async def measure(database_url: str, rows: int, repeat: int) -> dict[str, Any]:
    settings = make_settings(
        {
            "database": {"url": database_url},
            "apps": [{"id": "demo"}, {"id": "other"}],
            "sandbox": {"enabled": True},
        }
    )
    engine = create_engine(settings.database)
    await upgrade_database(engine)
    fill_seconds = await fill(engine, rows)
    sessions = session_factory(engine)
    async with build_runtime(settings, role=Role.OPERATOR, engine=engine) as runtime:
        result = await read_pages(engine, sessions, runtime.services.notifications, repeat)
    await engine.dispose()
    return {"database": engine.dialect.name, "rows": rows, "fill_seconds": fill_seconds, **result}


async def read_pages(
    engine: Any,
    sessions: async_sessionmaker[AsyncSession],
    service: NotificationService,
    repeat: int,
) -> dict[str, Any]:
    everyone = Caller.operator("bench")
    one_app = Caller("bench-one-app", frozenset(Tier), frozenset({"other"}))

    def page(caller: Caller = everyone, **query: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: service.of_user(caller, HEAVY_USER, UserNotificationsQuery(**query))

    async with sessions() as session:
        heavy = int(
            await session.scalar(
                select(sa.func.count()).where(col(Notification.user_id) == HEAVY_USER)
            )
            or 0
        )
    # the hundredth page, or the last whole one of a smaller table
    deep = min(DEEP_PAGES, heavy // PAGE)
    cursor: str | None = None
    for _ in range(deep - 1):  # walk there as a client would
        result = await service.of_user(
            everyone, HEAVY_USER, UserNotificationsQuery(limit=PAGE, cursor=cursor)
        )
        cursor = result.next_cursor
    assert cursor is not None, "not enough rows for a second page"

    async def by_offset() -> None:
        async with sessions() as session:
            statement = (
                select(Notification)
                .where(col(Notification.user_id) == HEAVY_USER)
                .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
                .offset((deep - 1) * PAGE)
                .limit(PAGE + 1)
            )
            (await session.execute(statement)).scalars().all()

    figures = {
        "first_page": await timed(page(limit=PAGE), repeat),
        "deep_page_by_cursor": await timed(page(limit=PAGE, cursor=cursor), repeat),
        "first_page_status_deferred": await timed(page(limit=PAGE, status="deferred"), repeat),
        "first_page_one_app_key": await timed(page(one_app, limit=PAGE), repeat),
        "deep_page_by_offset": await timed(by_offset, repeat),
    }
    return {
        "user_rows": heavy,
        "page_size": PAGE,
        "deep_page": deep,
        "figures": figures,
        "keyset_plan": await plan(engine, cursor),
    }


async def main_async(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    results = []
    if args.database in ("sqlite", "both"):
        results.append(await measure(sqlite_url(folder, "user-list.db"), args.rows, args.repeat))
    if args.database in ("postgresql", "both") and await postgres_available():
        async with postgres_schema() as url:
            results.append(await measure(url, args.rows, args.repeat))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed reads per figure")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pushgate-bench-") as folder:
        results = asyncio.run(main_async(args, Path(folder)))
    for result in results:
        print(
            f"{result['database']}: {result['rows']:,} notifications, {result['user_rows']:,} "
            f"of them the user's, filled in {result['fill_seconds']:.0f} s; pages of "
            f"{result['page_size']}, the deep one number {result['deep_page']}:"
        )
        for name, figure in result["figures"].items():
            print(
                f"  {name:<28} median {figure['median_ms']:7.2f} ms, p95 {figure['p95_ms']:7.2f} ms"
            )
        print("  plan: " + " | ".join(result["keyset_plan"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "user_list.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'user_list.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
