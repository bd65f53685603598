"""Benchmark: how long each console page takes the server at 1M notifications.

Run from the repository root::

    .venv/bin/python -m bench.bench_console                        # SQLite, 1M notifications
    .venv/bin/python -m bench.bench_console --database postgres    # the local PostgreSQL
    .venv/bin/python -m bench.bench_console --notifications 10000000 --runs 3

A fresh database (a temporary SQLite file, or a throwaway PostgreSQL schema at
``PUSHGATE_BENCH_POSTGRES_URL``, dropped at the end) gets N notifications created over the last
30 days by 100,000 users of two apps: 5% still deferred (created in the last two days and
released over the next 48 hours, 99 in 100 for quiet hours across eight zones, the rest
scheduled), the others sent, each with one
delivery (a fiftieth of those failed, a hundredth invalid_token, a twentieth retried), plus
N/5 devices in every token state and N/50 token invalidations over 60 days. Rows are written
with the driver's bulk path (``executemany`` on SQLite, ``COPY`` on PostgreSQL) in creation
order, as the gateway writes them, then ``ANALYZE`` (``VACUUM ANALYZE`` on PostgreSQL, as
autovacuum would have done); loading is not what is measured.

Measured: each page requested over HTTP on loopback from the real app (signed in, as a
browser would), the median of ``--runs`` after one warm-up: the server's whole answer,
queries and rendering. The permission funnel page reads the funnel's rollups, measured at
scale in ``bench/bench_permission_funnel.py``; here it runs over an empty history.

The table goes to stdout and the numbers to ``bench/results/console-<backend>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import ClientSession, CookieJar, web
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import POSTGRES_URL, RESULTS
from gateway.api.app import init_app
from gateway.config import DatabaseConfig, load_settings
from gateway.db import create_engine, upgrade_database
from gateway.runtime import Role, build_runtime

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
KEY = "bench-console-key"
USERS = 100_000
BATCH = 50_000
ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "America/Sao_Paulo",
)
PAGES = (
    ("deferred queue", "/console/deferred"),
    ("deferred queue, one app and tier", "/console/deferred?app=demo&tier=behavioral"),
    ("deliveries", "/console/deliveries"),
    ("deliveries, one app", "/console/deliveries?app=demo"),
    ("tokens", "/console/tokens"),
    ("permission funnel", "/console/funnel?app=demo"),
    ("user lookup", "/console/users?user_id=u42"),
)

NOTIFICATION_COLUMNS = [
    "id",
    "user_id",
    "app",
    "tier",
    "category",
    "classified_by",
    "status",
    "reason",
    "title",
    "body",
    "data",
    "collapse_key",
    "badge",
    "sound",
    "thread_id",
    "sender",
    "request_id",
    "deliver_at",
    "expires_at",
    "counted_at",
    "created_at",
    "updated_at",
    "send_at",
    "send_at_local",
    "scheduled_wall_time",
    "scheduled_zone",
    "decision",
]
DELIVERY_COLUMNS = [
    "id",
    "notification_id",
    "device_id",
    "platform",
    "app",
    "status",
    "attempts",
    "provider_id",
    "error",
    "end_reason",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "created_at",
    "updated_at",
]
DEVICE_COLUMNS = [
    "id",
    "user_id",
    "app",
    "platform",
    "token",
    "environment",
    "timezone",
    "locale",
    "permission",
    "status",
    "invalid_reason",
    "invalidated_at",
    "invalidated_by",
    "created_at",
    "last_seen_at",
    "updated_at",
]
EVENT_COLUMNS = ["device_id", "app", "platform", "token_suffix", "kind", "reason", "actor", "at"]


def _notifications(count: int, rng: random.Random) -> Iterator[tuple[list[Any], list[Any]]]:
    """(notification, delivery or empty) rows."""
    month = 30 * 24 * 3600
    # written in creation order, as the gateway writes them; the deferred ones were created in
    # the last two days (a night's quiet hours, or a send scheduled a day or two ahead)
    ages = sorted(
        (rng.random() * (2 * 24 * 3600 if n % 20 == 0 else month), n % 20 == 0)
        for n in range(count)
    )
    for n, (age, deferred) in enumerate(reversed(ages)):
        created = NOW - timedelta(seconds=age)
        app = "demo" if n % 3 else "other"
        tier = ("transactional", "behavioral", "promotional")[n % 3]
        notification_id = str(uuid.uuid4())
        if deferred:
            deliver_at = NOW + timedelta(seconds=rng.random() * 48 * 3600)
            reason = "quiet_hours" if n % 100 else "scheduled"
            zone = ZONES[n % len(ZONES)]
            decision = json.dumps(
                {
                    "zone": zone,
                    "zone_source": "device",
                    "local_time": created.isoformat(),
                    "quiet_hours": {"start": "22:00", "end": "08:00"},
                    "rule": "quiet_hours" if reason == "quiet_hours" else "scheduled",
                    "status": "deferred",
                    "reason": reason,
                    "deliver_at": deliver_at.isoformat(),
                }
            )
            status = "deferred"
        else:
            deliver_at, reason, decision, status = None, None, None, "sent"
        row = [
            notification_id, f"u{n % USERS}", app, tier, None, "tier", status, reason,
            "t", None, None, None, None, None, None, "bench", None, deliver_at,
            created + timedelta(days=7), None, created, created, None, None, None, None,
            decision,
        ]  # fmt: skip
        delivery: list[Any] = []
        if not deferred:
            outcome = "sent"
            if n % 50 == 1:
                outcome = "failed"
            elif n % 100 == 2:
                outcome = "invalid_token"
            latency = rng.expovariate(4.0)
            delivery = [
                str(uuid.uuid4()), notification_id, str(uuid.uuid4()),
                "ios" if n % 2 else "android", app, outcome, 2 if n % 20 == 3 else 1, None, None,
                None, created, None, None, created, created + timedelta(seconds=latency),
            ]  # fmt: skip
        yield row, delivery


def _devices(count: int) -> Iterator[list[Any]]:
    for n in range(count):
        status = "invalid" if n % 25 == 0 else "stale" if n % 10 == 0 else "active"
        yield [
            str(uuid.uuid4()), f"u{n % USERS}", "demo" if n % 3 else "other",
            "ios" if n % 2 else "android", uuid.uuid4().hex * 2, "production", None, None,
            "granted", status, "Unregistered" if status == "invalid" else None,
            NOW if status == "invalid" else None, None, NOW - timedelta(days=90),
            NOW - timedelta(days=n % 60), NOW,
        ]  # fmt: skip


def _invalidations(count: int, rng: random.Random) -> Iterator[list[Any]]:
    for n in range(count):
        yield [
            str(uuid.uuid4()), "demo" if n % 3 else "other", "ios" if n % 2 else "android",
            "abcdef", "invalidated", ("Unregistered", "BadDeviceToken", "UNREGISTERED")[n % 3],
            "bench", NOW - timedelta(seconds=rng.random() * 60 * 86400),
        ]  # fmt: skip


def _sqlite_value(value: Any) -> Any:
    # as SQLAlchemy stores a UTC timestamp on SQLite: naive, six fractional digits
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def _write(
    engine: AsyncEngine, table: str, columns: list[str], rows: list[list[Any]]
) -> None:
    if not rows:
        return
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            marks = ", ".join("?" for _ in columns)
            await connection.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                [tuple(_sqlite_value(v) for v in row) for row in rows],
            )
        else:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.copy_records_to_table(
                table, records=[tuple(row) for row in rows], columns=columns
            )


async def load(engine: AsyncEngine, count: int) -> float:
    started = time.perf_counter()
    rng = random.Random(7)
    notifications: list[list[Any]] = []
    deliveries: list[list[Any]] = []
    for row, delivery in _notifications(count, rng):
        notifications.append(row)
        if delivery:
            deliveries.append(delivery)
        if len(notifications) >= BATCH:
            await _write(engine, "notifications", NOTIFICATION_COLUMNS, notifications)
            await _write(engine, "deliveries", DELIVERY_COLUMNS, deliveries)
            notifications, deliveries = [], []
    await _write(engine, "notifications", NOTIFICATION_COLUMNS, notifications)
    await _write(engine, "deliveries", DELIVERY_COLUMNS, deliveries)
    for table, columns, rows in (
        ("devices", DEVICE_COLUMNS, list(_devices(count // 5))),
        ("token_events", EVENT_COLUMNS, list(_invalidations(count // 50, rng))),
    ):
        for start in range(0, len(rows), BATCH):
            await _write(engine, table, columns, rows[start : start + BATCH])
    # what autovacuum would have done on a live table (PostgreSQL's index-only scans need it)
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql(
            "ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE"
        )
    return time.perf_counter() - started


async def measure(engine: AsyncEngine, url: str, runs: int) -> list[dict[str, Any]]:
    settings = load_settings(
        None,
        database={"url": url},
        sandbox={"enabled": True},
        apps=[{"id": "demo"}, {"id": "other"}],
        api_keys=[
            {
                "name": "bench",
                "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                "allowed_tiers": ["transactional", "behavioral", "promotional"],
                "scopes": ["users:read"],
            }
        ],
    )
    results = []
    async with build_runtime(settings, role=Role.API, engine=engine, clock=lambda: NOW) as runtime:
        runner = web.AppRunner(init_app(runtime), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        try:
            # the cookie comes from an IP address, which aiohttp's default jar refuses
            async with ClientSession(base, cookie_jar=CookieJar(unsafe=True)) as client:
                async with client.post("/console/login", data={"key": KEY}) as response:
                    assert response.status == 200, await response.text()
                for name, path in PAGES:
                    times = []
                    for _ in range(runs + 1):  # the first warms the caches
                        started = time.perf_counter()
                        async with client.get(path, allow_redirects=False) as response:
                            await response.read()
                            assert response.status == 200, (path, response.status)
                        times.append((time.perf_counter() - started) * 1000)
                    median = statistics.median(times[1:])
                    results.append({"page": name, "path": path, "median_ms": round(median, 1)})
                    print(f"  {name:<36} {median:8.1f} ms", file=sys.stderr)
        finally:
            await runner.cleanup()
    return results


async def run(database: str, count: int, runs: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pushgate-console-"))
    schema = None
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{folder / 'bench.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        await _postgres(POSTGRES_URL, f'CREATE SCHEMA "{schema}"')
        url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}search_path={schema}"
    engine = create_engine(DatabaseConfig(url=url))
    try:
        await upgrade_database(engine)
        print(f"loading {count:,} notifications ({database}) ...", file=sys.stderr)
        load_seconds = await load(engine, count)
        print(f"  loaded in {load_seconds:.0f} s", file=sys.stderr)
        pages = await measure(engine, url, runs)
    finally:
        await engine.dispose()
        if schema is not None:
            await _postgres(POSTGRES_URL, f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(folder)
    return {"backend": database, "notifications": count, "runs": runs, "pages": pages}


async def _postgres(url: str, statement: str) -> None:
    admin = create_engine(DatabaseConfig(url=url))
    try:
        async with admin.begin() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--notifications", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    result = asyncio.run(run(arguments.database, arguments.notifications, arguments.runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"console-{arguments.database}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'page':<36} {'median':>10}  ({result['notifications']:,} notifications)")
    for page in result["pages"]:
        print(f"{page['page']:<36} {page['median_ms']:>7.1f} ms")


if __name__ == "__main__":
    main()
