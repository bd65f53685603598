"""End to end: ``POST /v1/notifications`` until the APNs request arrives, against raw aioapns.

The two moments that matter to a sending service are its POST and the phone getting the push.
``count`` notifications, each to its own user with one iOS device, are posted by
``concurrency`` callers to the real ``pushgate serve`` (API and worker in one process, as the
quick start runs it), on SQLite and on PostgreSQL, delivering to the APNs simulator in its own
process. The clock runs from the first POST until the simulator has answered the last request.
The ceiling is unmodified aioapns sending the same number of notifications, at the same
concurrency, to the same simulator: everything the gateway adds (HTTP, auth, validation, policy,
storage, the queue, recording) shows as the gap between the two. Runs are interleaved, and each
run's ratio is taken against the raw run next to it.

Each database is measured with one gateway process and again with ``--processes 2`` (two API
processes on the port, the first also delivering), to show what a second core buys.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

from bench.delivery import raw_apns_client, raw_apns_send, seed_devices
from bench.stack import (
    APP,
    SimulatorProcess,
    client_session,
    make_settings,
    median,
    percentile,
    postgres_available,
    postgres_schema,
    pushgate_serve,
    settings_data,
    sqlite_url,
)
from gateway.db import create_engine, session_factory
from gateway.services.context import system_clock

POLL_SECONDS = 0.01  # how often the simulator is asked whether the last request has arrived


async def _until_answered(sims: SimulatorProcess, count: int, *, within: float) -> None:
    deadline = time.monotonic() + within
    while (await sims.stats())["apns_answered"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulator answered {await sims.stats()} of {count}")
        await asyncio.sleep(POLL_SECONDS)


async def _gateway_run(
    url: str, users: list[str], sims: SimulatorProcess, concurrency: int
) -> tuple[float, list[float]]:
    """Seconds from the first POST until the simulator answered the last, and each POST's
    latency."""
    numbers = itertools.count()
    latencies: list[float] = []
    await sims.reset()
    async with client_session(concurrency) as session:

        async def caller() -> None:
            while (index := next(numbers)) < len(users):
                body = {
                    "user_id": users[index],
                    "app": APP,
                    "category": "order_shipped",
                    "title": "Your order shipped",
                    "body": "It arrives Tuesday",
                }
                sent = time.perf_counter()
                async with session.post(f"{url}/v1/notifications", json=body) as response:
                    await response.read()
                    if response.status != 202:
                        raise RuntimeError(f"POST answered {response.status}")
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        await _until_answered(sims, len(users), within=300)
        elapsed = time.perf_counter() - started
    return elapsed, latencies


async def _raw_run(client: Any, sims: SimulatorProcess, count: int, concurrency: int) -> float:
    await sims.reset()
    started = time.perf_counter()
    sent = await raw_apns_send(client, count, concurrency)
    elapsed = time.perf_counter() - started
    if sent != count:
        raise RuntimeError(f"raw aioapns: {sent} of {count} sent")
    return elapsed


async def measure_database(
    sims: SimulatorProcess,
    database_url: str,
    *,
    runs: int,
    count: int,
    concurrency: int,
    processes: int = 1,
    first_user: str = "e2e",
) -> dict[str, Any]:
    data = settings_data(database_url, sims.sections)
    async with pushgate_serve(data, processes=processes) as server:  # creates the schema
        engine = create_engine(make_settings(data).database)
        try:
            # a fresh set of users (each with one device) per run, so no cap or collapse
            # carries over from one run to the next
            batches = []
            for run in range(runs + 1):
                users = [f"{first_user}-{run}-{index}" for index in range(count)]
                for start in range(0, count, 5000):
                    await seed_devices(
                        session_factory(engine), users[start : start + 5000], "ios", system_clock()
                    )
                batches.append(users)
        finally:
            await engine.dispose()
        raw = raw_apns_client(sims.sections)
        try:
            gateway_seconds: list[float] = []
            raw_seconds: list[float] = []
            latencies: list[float] = []
            for run, users in enumerate(batches):
                raw_time = await _raw_run(raw, sims, count, concurrency)
                elapsed, posts = await _gateway_run(server.url, users, sims, concurrency)
                if run == 0:
                    continue  # warm-up: connections, JWT, statement caches
                raw_seconds.append(raw_time)
                gateway_seconds.append(elapsed)
                latencies += posts
        finally:
            raw.pool.close()
    return {
        "count": count,
        "concurrency": concurrency,
        "processes": processes,
        "gateway_per_second": median([count / seconds for seconds in gateway_seconds]),
        "raw_per_second": median([count / seconds for seconds in raw_seconds]),
        "ratio_to_raw": median(
            [raw / gateway for raw, gateway in zip(raw_seconds, gateway_seconds, strict=True)]
        ),
        "post_p50_ms": percentile(latencies, 0.50) * 1000,
        "post_p99_ms": percentile(latencies, 0.99) * 1000,
        "runs_gateway_seconds": [round(seconds, 3) for seconds in gateway_seconds],
        "runs_raw_seconds": [round(seconds, 3) for seconds in raw_seconds],
    }


async def measure(*, runs: int, count: int, concurrency: int, folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "count": count,
        "concurrency": concurrency,
        "databases": {},
        "two_processes": {},
    }
    async with contextlib.AsyncExitStack() as stack:
        sims = await stack.enter_async_context(SimulatorProcess())
        databases = {"sqlite": sqlite_url(folder, "end-to-end.db")}
        if await postgres_available():
            databases["postgresql"] = await stack.enter_async_context(postgres_schema())
        for name, url in databases.items():
            result["databases"][name] = await measure_database(
                sims, url, runs=runs, count=count, concurrency=concurrency
            )
            # fresh users: the first measurement's are capped by now
            result["two_processes"][name] = await measure_database(
                sims,
                url,
                runs=runs,
                count=count,
                concurrency=concurrency,
                processes=2,
                first_user="e2e-2p",
            )
    return result
