"""Benchmark: the permission funnel query at 1M and 10M events, against counting the events.

Run from the repository root::

    .venv/bin/python -m bench.bench_permission_funnel                         # SQLite, 1M and 10M
    .venv/bin/python -m bench.bench_permission_funnel --database postgres     # the local PostgreSQL
    .venv/bin/python -m bench.bench_permission_funnel --events 1000000 --runs 3

Each size gets a fresh database (a temporary SQLite file, or a throwaway PostgreSQL schema at
``PUSHGATE_BENCH_POSTGRES_URL``, dropped at the end). It holds N permission events of one app
(the worst case: every event is the funnel's) over 365 days: ten per user on average, on three
days of each user's (users spread evenly over the year), in the mix an app reports (value
moments most, OS answers fewer, a few re-enables), and the funnel rollup those events produce.
The rows are generated inside the database in batches of 1,000,000 with ``INSERT ... SELECT``
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite): the fastest bulk load either
has, and not what is measured. Then ``VACUUM ANALYZE`` (``ANALYZE`` on SQLite), as autovacuum
would have done on a live table.

Measured, each the median of ``--runs`` after one warm-up run:

- ``funnel``: :func:`gateway.services.permission.count_funnel_users`, the query the API and the
  CLI run, over windows without an end (answered by the last-day rollup: the last 7 days, the
  last 30 days as the API's default gives them, the same for one platform, the last 30 days
  from an instant so a partial day is read from the events, the whole year) and windows with
  an end (answered by the daily rollup: 30 whole days, and 30 days between two instants);
- ``events only``: the same counts, computed the same way, straight from the events over their
  ``(app, at)`` index: what the funnel would cost without the rollups.

The machine's load average is recorded next to each window: on a shared machine the figures
are only as steady as the neighbours.

The table goes to stdout and the numbers to ``bench/results/permission-funnel-<backend>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import POSTGRES_URL, RESULTS
from gateway.config import DatabaseConfig
from gateway.db import create_engine, session_factory, upgrade_database
from gateway.services.permission import count_funnel_users
from tokens.models import UTCDateTime

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=365)
APP = "bench"
EVENTS_PER_USER = 10
ACTIVE_DAYS = 3  # a user's events fall on three days of the year
YEAR_SECONDS = 365 * 86_400
BATCH = 1_000_000
TABLES = ("permission_events", "permission_funnel_days", "permission_funnel_users")

# What an app reports, out of 100 events: (first bucket, end bucket, event, result, step,
# re_enabled). An os_prompt_result that re-enables a device was denied before.
MIX = [
    (0, 40, "value_moment", None, "value_moment", False),
    (40, 55, "soft_ask_shown", None, "soft_ask_shown", False),
    (55, 63, "soft_ask_accepted", None, "soft_ask_accepted", False),
    (63, 70, "soft_ask_declined", None, "soft_ask_declined", False),
    (70, 78, "os_prompt_shown", None, "os_prompt_shown", False),
    (78, 83, "os_prompt_result", "granted", "os_granted", False),
    (83, 86, "os_prompt_result", "denied", "os_denied", False),
    (86, 88, "os_prompt_result", "provisional", "os_provisional", False),
    (88, 99, "value_moment", None, "value_moment", False),
    (99, 100, "os_prompt_result", "granted", "os_granted", True),
]


def _mix_sql() -> str:
    rows = []
    for low, high, event, result, step, re_enabled in MIX:
        result_sql = f"'{result}'" if result else "NULL"
        rows.append(f"({low}, {high}, '{event}', {result_sql}, '{step}', {int(re_enabled)})")
    return "VALUES " + ", ".join(rows)


# g is the row number; b its bucket in MIX; s its second in the year, growing with g, so rows
# are stored in the order they would have arrived; u its user: one of the users whose k-th
# active day is that day. User u is active on days 7u, 7u + 53 and 7u + 106 (mod 365); 313 is
# the inverse of 7 mod 365, so u = (day - 53k) * 313 (mod 365) + 365m for any m. Only this
# module's constants are formatted in; every value is a bound parameter.
_POSTGRES_EVENTS = f"""
WITH mix(low, high, event, result, step, re_enabled) AS ({_mix_sql()}),
rows AS (
    SELECT g, (g * 7919) % 100 AS b, g % {ACTIVE_DAYS} AS k,
           (g - 1) * {YEAR_SECONDS} / CAST(:total AS bigint) AS s,
           (g * 2654435761) % CAST(:per_residue AS bigint) AS m
    FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
),
timed AS (
    SELECT *, (((s / 86400 - 53 * k) % 365 + 365) % 365) * 313 % 365 + 365 * m AS u FROM rows
)
INSERT INTO permission_events (user_id, app, platform, event, result, source, reported_by,
                               previous_permission, funnel_step, re_enabled, at, recorded_at)
SELECT 'user-' || u, '{APP}', CASE u % 2 WHEN 0 THEN 'ios' ELSE 'android' END,
       mix.event, mix.result, 'reported', 'bench',
       CASE WHEN mix.re_enabled = 1 THEN 'denied' END, mix.step, mix.re_enabled = 1,
       :start + s * interval '1 second', :start + s * interval '1 second'
FROM timed JOIN mix ON timed.b >= mix.low AND timed.b < mix.high
"""  # noqa: S608 (constants only)
_POSTGRES_DAY = "(at AT TIME ZONE 'UTC')::date"

_SQLITE_EVENTS = f"""
WITH RECURSIVE seq(g) AS (SELECT :first UNION ALL SELECT g + 1 FROM seq WHERE g < :last),
mix(low, high, event, result, step, re_enabled) AS ({_mix_sql()}),
rows AS (
    SELECT g, (g * 7919) % 100 AS b, g % {ACTIVE_DAYS} AS k,
           (g - 1) * {YEAR_SECONDS} / :total AS s,
           (g * 2654435761) % :per_residue AS m
    FROM seq
),
timed AS (
    SELECT *, (((s / 86400 - 53 * k) % 365 + 365) % 365) * 313 % 365 + 365 * m AS u FROM rows
)
INSERT INTO permission_events (user_id, app, platform, event, result, source, reported_by,
                               previous_permission, funnel_step, re_enabled, at, recorded_at)
SELECT 'user-' || u, '{APP}', CASE u % 2 WHEN 0 THEN 'ios' ELSE 'android' END,
       mix.event, mix.result, 'reported', 'bench',
       CASE WHEN mix.re_enabled = 1 THEN 'denied' END, mix.step, mix.re_enabled,
       datetime(:start_epoch + s, 'unixepoch') || '.000000',
       datetime(:start_epoch + s, 'unixepoch') || '.000000'
FROM timed JOIN mix ON timed.b >= mix.low AND timed.b < mix.high
"""  # noqa: S608 (constants only)
_SQLITE_DAY = "substr(at, 1, 10)"

# The rollup those events write as they arrive, built here in one pass.
_ROLLUP = """
INSERT INTO permission_funnel_days (app, day, platform, step, user_id)
SELECT DISTINCT app, {day}, platform, funnel_step, user_id FROM permission_events
UNION
SELECT DISTINCT app, {day}, platform, 're_enabled', user_id FROM permission_events
WHERE re_enabled
"""

# The last day each user reached each step, on each platform and on any.
_LAST_DAYS = """
INSERT INTO permission_funnel_users (user_id, app, scope, step, last_day)
SELECT user_id, app, platform, step, max(day) FROM permission_funnel_days
GROUP BY user_id, app, platform, step
UNION ALL
SELECT user_id, app, 'all', step, max(day) FROM permission_funnel_days
GROUP BY user_id, app, step
"""

# The funnel without the rollup: every event of the window, counted per step the same way.
_EVENTS_ONLY = """
SELECT step, count(*) FROM (
    SELECT DISTINCT step, user_id FROM (
        SELECT funnel_step AS step, user_id FROM permission_events
        WHERE app = :app AND at >= :since AND at < :until {platform}
        UNION ALL
        SELECT 're_enabled', user_id FROM permission_events
        WHERE app = :app AND at >= :since AND at < :until AND re_enabled {platform}
    ) AS reached
) AS users GROUP BY step
"""


async def load(engine: AsyncEngine, count: int) -> float:
    """Generate ``count`` events and their rollup; returns the seconds it took."""
    postgres = engine.dialect.name == "postgresql"
    # users come in 365 residues of `per_residue` each (see the SQL)
    per_residue = max(1, count // EVENTS_PER_USER // 365)
    started = time.perf_counter()
    for first in range(1, count + 1, BATCH):
        last = min(count, first + BATCH - 1)
        values: dict[str, Any] = {
            "first": first,
            "last": last,
            "total": count,
            "per_residue": per_residue,
        }
        if postgres:
            statement = sa.text(_POSTGRES_EVENTS).bindparams(
                sa.bindparam("start", START, type_=sa.DateTime(timezone=True))
            )
        else:
            statement = sa.text(_SQLITE_EVENTS)
            values["start_epoch"] = int(START.timestamp())
        async with engine.begin() as connection:
            await connection.execute(statement, values)
        print(f"  {last:,} events", file=sys.stderr)
    day = _POSTGRES_DAY if postgres else _SQLITE_DAY
    async with engine.begin() as connection:
        await connection.execute(sa.text(_ROLLUP.format(day=day)))
        await connection.execute(sa.text(_LAST_DAYS))
    print("  rollups built; analyzing", file=sys.stderr)
    if postgres:
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            for table in TABLES:
                await connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
    else:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


async def table_rows(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table: int(
                (await connection.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608
            )
            for table in TABLES
        }


TODAY = datetime.combine(NOW.date(), datetime.min.time(), tzinfo=UTC)
# name: (since, until or None for no end, platform or None for both)
WINDOWS: dict[str, tuple[datetime, datetime | None, str | None]] = {
    "last 7 days": (TODAY - timedelta(days=6), None, None),
    "last 30 days (the default)": (TODAY - timedelta(days=29), None, None),
    "last 30 days, ios": (TODAY - timedelta(days=29), None, "ios"),
    "since an instant 30 days ago": (NOW - timedelta(days=30), None, None),
    "whole year": (TODAY - timedelta(days=364), None, None),
    "30 whole days, ended": (TODAY - timedelta(days=60), TODAY - timedelta(days=30), None),
    "30 days between instants": (NOW - timedelta(days=60), NOW - timedelta(days=30), None),
}


async def timed(runs: int, body: Callable[[], Awaitable[dict[str, int]]]) -> dict[str, Any]:
    """One warm-up, then ``runs`` timed runs: the median and every sample, in milliseconds."""
    answer = await body()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await body()
        samples.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(samples), "samples_ms": samples, "counts": answer}


async def measure(engine: AsyncEngine, runs: int) -> dict[str, Any]:
    sessions = session_factory(engine)
    results: dict[str, Any] = {}
    for name, (since, until, only) in WINDOWS.items():

        async def funnel(
            since: datetime = since, until: datetime | None = until, only: str | None = only
        ) -> dict[str, int]:
            async with sessions() as session:
                counts = await count_funnel_users(
                    session, app=APP, platform=only, since=since, until=until
                )
            return {str(step): n for step, n in counts.items()}

        async def events_only(
            since: datetime = since, until: datetime | None = until, only: str | None = only
        ) -> dict[str, int]:
            statement = sa.text(
                _EVENTS_ONLY.format(platform="AND platform = :platform" if only else "")
            ).bindparams(
                sa.bindparam("since", since, type_=UTCDateTime()),
                sa.bindparam("until", until or NOW + timedelta(days=1), type_=UTCDateTime()),
            )
            values: dict[str, Any] = {"app": APP}
            if only:
                values["platform"] = only
            async with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    await connection.execute(sa.text("SET LOCAL jit = off"))  # as the funnel
                rows = await connection.execute(statement, values)
                return {str(step): int(n) for step, n in rows}

        load_before = os.getloadavg()[0]
        ours = await timed(runs, funnel)
        floor = await timed(runs, events_only)
        assert ours["counts"] == floor["counts"], (name, ours["counts"], floor["counts"])
        results[name] = {
            "since": since.isoformat(),
            "until": until.isoformat() if until is not None else None,
            "platform": only,
            "funnel": ours,
            "events_only": floor,
            "load_average": [load_before, os.getloadavg()[0]],
        }
        print(
            f"  {name:<30} funnel {ours['median_ms']:9.1f} ms   "
            f"events only {floor['median_ms']:9.1f} ms",
            file=sys.stderr,
        )
    return results


async def run_size(url: str | None, count: int, runs: int, *, keep: bool) -> dict[str, Any]:
    """Load ``count`` events into a fresh database and measure; the database is removed after,
    unless ``keep`` (to look at query plans), when where it is goes to stderr."""
    schema = None
    folder = Path(tempfile.mkdtemp(prefix="pushgate-funnel-"))
    if url is None:
        url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        await _postgres(url, f'CREATE SCHEMA "{schema}"')
        url = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
    engine = create_engine(DatabaseConfig(url=url))
    try:
        await upgrade_database(engine)
        print(f"loading {count:,} events ({engine.dialect.name}) ...", file=sys.stderr)
        load_seconds = await load(engine, count)
        rows = await table_rows(engine)
        print(f"  loaded in {load_seconds:.0f} s: {rows}", file=sys.stderr)
        windows = await measure(engine, runs)
        backend = engine.dialect.name
    finally:
        await engine.dispose()
        if keep:
            print(f"  kept: {url}", file=sys.stderr)
        else:
            if schema is not None:
                await _postgres(url.split("?")[0], f'DROP SCHEMA "{schema}" CASCADE')
            shutil.rmtree(folder)
    return {
        "events": count,
        "backend": backend,
        "rows": rows,
        "load_seconds": load_seconds,
        "windows": windows,
    }


async def _postgres(url: str, statement: str) -> None:
    admin = create_engine(DatabaseConfig(url=url))
    try:
        async with admin.begin() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await admin.dispose()


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        "| events | window | funnel | events only | load average |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        for name, window in result["windows"].items():
            load = "-".join(f"{value:.1f}" for value in window["load_average"])
            lines.append(
                f"| {result['events']:,} | {name} | {window['funnel']['median_ms']:.1f} ms | "
                f"{window['events_only']['median_ms']:.1f} ms | {load} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="sizes to measure, each in a fresh database (default: 1,000,000 and 10,000,000)",
    )
    parser.add_argument(
        "--database",
        default="sqlite",
        help="'sqlite' (a temporary file), 'postgres' (PUSHGATE_BENCH_POSTGRES_URL) or a "
        "postgresql+asyncpg:// URL",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per query (default 5)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (its URL goes to stderr)"
    )
    args = parser.parse_args()
    url = {"sqlite": None, "postgres": POSTGRES_URL}.get(args.database, args.database)
    results = [
        asyncio.run(run_size(url, count, args.runs, keep=args.keep)) for count in args.events
    ]
    backend = results[0]["backend"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"permission-funnel-{backend}.json"
    document = {
        "benchmark": "permission funnel",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "now": NOW.isoformat(),
        "results": results,
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    print(f"\n(wrote {out.relative_to(RESULTS.parent.parent)})")


if __name__ == "__main__":
    main()
