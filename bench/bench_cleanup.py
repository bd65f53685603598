"""Benchmark: ``tokens cleanup`` on N devices against the floor, one bare SQL ``UPDATE``.

Run from the repository root::

    .venv/bin/python -m bench.bench_cleanup                      # 1,000,000 devices, SQLite
    .venv/bin/python -m bench.bench_cleanup --devices 200000
    .venv/bin/python -m bench.bench_cleanup --database postgresql+asyncpg://postgres@127.0.0.1/test

The database is seeded once with N active devices, all last seen 400 days ago (rows are
generated inside the database, so seeding is not measured). Then, in the same process:

- ``floor``: ``UPDATE devices SET status='stale' ... WHERE status='active' AND last_seen_at <
  cutoff`` in one statement: what any stale cleanup has to pay at least.
- ``cleanup``: :func:`tokens.mark_stale_devices` as the CLI runs it: batches of 5,000 claimed
  with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one commit per batch, and one ``stale`` audit
  event per device (the floor writes no audit trail at all).

The rows are reset to active (and the events deleted) between the two. Peak memory is the
highest resident set size sampled every 5 ms during the phase, minus the size at its start.
The table goes to stdout and the numbers to ``bench/results/cleanup-<backend>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DatabaseConfig
from gateway.db import create_engine, session_factory, upgrade_database
from tokens import mark_stale_devices, stale_cutoffs
from tokens.cleanup import DEFAULT_BATCH_SIZE, devices, token_events
from tokens.models import UTCDateTime

RESULTS = Path(__file__).resolve().parent / "results"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEEN = NOW - timedelta(days=400)
STALE_DAYS = 270

SEED_SQLITE = """
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < :n)
INSERT INTO devices (id, user_id, app, platform, token, environment, permission, status,
                     created_at, last_seen_at, updated_at)
SELECT printf('dev-%010d', i), printf('user-%d', i), 'shop',
       CASE i % 2 WHEN 0 THEN 'ios' ELSE 'android' END, printf('%064d', i),
       'production', 'granted', 'active', :seen, :seen, :seen
FROM seq
"""
SEED_POSTGRES = """
INSERT INTO devices (id, user_id, app, platform, token, environment, permission, status,
                     created_at, last_seen_at, updated_at)
SELECT 'dev-' || lpad(i::text, 10, '0'), 'user-' || i, 'shop',
       CASE i % 2 WHEN 0 THEN 'ios' ELSE 'android' END, lpad(i::text, 64, '0'),
       'production', 'granted', 'active', :seen, :seen, :seen
FROM generate_series(0, :n - 1) AS i
"""


@dataclass
class Measurement:
    name: str
    rows: int
    seconds: float
    peak_rss_mib: float


class PeakRss:
    """Samples this process's resident set size in a thread; ``peak`` is above the start."""

    def __init__(self, interval: float = 0.005) -> None:
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._start = 0
        self._peak = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._start = self._peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return (self._peak - self._start) / 2**20


async def measure(name: str, body: Callable[[], Awaitable[int]]) -> Measurement:
    with PeakRss() as rss:
        started = time.perf_counter()
        rows = await body()
        seconds = time.perf_counter() - started
    return Measurement(name, rows, seconds, rss.peak_mib)


async def seed(engine: AsyncEngine, count: int) -> None:
    sql = SEED_POSTGRES if engine.dialect.name == "postgresql" else SEED_SQLITE
    statement = sa.text(sql).bindparams(
        sa.bindparam("seen", SEEN, type_=UTCDateTime()), sa.bindparam("n", count)
    )
    async with engine.begin() as connection:
        await connection.execute(statement)
    await analyze(engine)


async def analyze(engine: AsyncEngine) -> None:
    if engine.dialect.name == "postgresql":
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            await connection.execute(sa.text("VACUUM ANALYZE devices"))
            await connection.execute(sa.text("VACUUM ANALYZE token_events"))
    else:
        async with engine.begin() as connection:
            await connection.execute(sa.text("ANALYZE"))


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.update(devices).values(status="active"))
        await connection.execute(sa.delete(token_events))
    await analyze(engine)


async def bare_update(engine: AsyncEngine) -> int:
    cutoff = NOW - timedelta(days=STALE_DAYS)
    async with engine.begin() as connection:
        result = await connection.execute(
            sa.update(devices)
            .where(devices.c.status == "active", devices.c.last_seen_at < cutoff)
            .values(status="stale", updated_at=NOW)
        )
    return int(result.rowcount)


async def cleanup(engine: AsyncEngine, batch_size: int) -> int:
    result = await mark_stale_devices(
        session_factory(engine),
        now=NOW,
        cutoffs=stale_cutoffs(NOW, {"ios": STALE_DAYS, "android": STALE_DAYS}),
        actor="bench",
        batch_size=batch_size,
    )
    return result.total


async def run(url: str | None, count: int, batch_size: int) -> dict[str, object]:
    schema = None
    with tempfile.TemporaryDirectory() as folder:
        if url is None:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        elif url.startswith("postgresql"):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            await _postgres_schema(url, f'CREATE SCHEMA "{schema}"')
            url = f"{url}{'&' if '?' in url else '?'}search_path={schema}"
        engine = create_engine(DatabaseConfig(url=url))
        try:
            await upgrade_database(engine)
            print(f"seeding {count:,} devices ({engine.dialect.name}) ...", file=sys.stderr)
            await seed(engine, count)
            floor = await measure("floor: one bare UPDATE", lambda: bare_update(engine))
            await reset(engine)
            ours = await measure(
                f"tokens cleanup (batches of {batch_size:,})", lambda: cleanup(engine, batch_size)
            )
            backend = engine.dialect.name
        finally:
            await engine.dispose()
            if schema is not None:
                await _postgres_schema(url.split("?")[0], f'DROP SCHEMA "{schema}" CASCADE')
    assert floor.rows == ours.rows == count, (floor.rows, ours.rows, count)
    return {
        "benchmark": "cleanup",
        "backend": backend,
        "devices": count,
        "batch_size": batch_size,
        "floor": asdict(floor),
        "cleanup": asdict(ours),
        "time_ratio": ours.seconds / floor.seconds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": psutil.cpu_count(),
    }


async def _postgres_schema(url: str, ddl: str) -> None:
    admin = create_engine(DatabaseConfig(url=url))
    try:
        async with admin.begin() as connection:
            await connection.execute(sa.text(ddl))
    finally:
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--database", help="database URL (default: a fresh SQLite file in a temporary folder)"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.database, args.devices, args.batch_size))

    floor, ours = report["floor"], report["cleanup"]
    assert isinstance(floor, dict) and isinstance(ours, dict)
    print(f"\ncleanup of {args.devices:,} stale devices on {report['backend']}")
    print(f"{'case':<40} {'rows':>10} {'seconds':>9} {'peak RSS MiB':>13}")
    for row in (floor, ours):
        print(
            f"{row['name']:<40} {row['rows']:>10,} {row['seconds']:>9.2f} "
            f"{row['peak_rss_mib']:>13.1f}"
        )
    print(f"time ratio cleanup / floor: {report['time_ratio']:.2f}x")

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cleanup-{report['backend']}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
