"""Ingest: ``POST /v1/notifications`` on the real app against a bare aiohttp endpoint.

The app is the real ``pushgate serve --api-only`` in its own process, on SQLite and on
PostgreSQL (when reachable). There are two ceilings, each :mod:`bench.ceiling` in its own
process: the bare endpoint (parse and answer: the issue's ceiling), and per database a durable
one that also stores each request with the raw driver the way pushgate does (group commit, no
ORM), so what the gateway's own logic costs reads off the second ratio. The load
generator (an aiohttp client, ``concurrency`` connections each sending back to back) runs in
this process, so it never shares an event loop with the server. Each notification is
transactional (category ``order_shipped``) for one of ``users`` users with one iOS device each,
so every request takes the full path: auth, validation, classification, the user's facts from
the database, the policy decision, the notification and its delivery row written and committed,
and the 202 body. The targets are interleaved run by run; each run's ratio is taken against the
ceiling of the same run, and medians over runs are reported.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Any

import aiohttp

from bench.stack import (
    APP,
    PYTHON,
    RESULTS,
    LoadResult,
    ServerProcess,
    client_session,
    cpu_seconds,
    free_port,
    median,
    percentile,
    post_load,
    postgres_available,
    postgres_schema,
    pushgate_serve,
    settings_data,
    sqlite_url,
)

DURABLE = "durable-"  # a ceiling that also stores each request: bench.ceiling --database


def notification_body(users: int) -> Any:
    def body(index: int) -> dict[str, Any]:
        return {
            "user_id": f"user-{index % users}",
            "app": APP,
            "category": "order_shipped",
            "title": "Your order shipped",
            "body": "It arrives Tuesday",
            "data": {"order_id": f"o-{index}"},
        }

    return body


async def register_devices(url: str, users: int) -> None:
    async with client_session(8) as session:
        for index in range(users):
            device = {
                "user_id": f"user-{index}",
                "app": APP,
                "platform": "ios",
                "token": secrets.token_hex(32),
            }
            async with session.post(f"{url}/v1/devices", json=device) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"registering a device: {response.status}")


def summarise(
    samples: list[LoadResult], ceiling: list[LoadResult], durable: list[LoadResult] | None
) -> dict[str, Any]:
    return {
        "requests_per_second": median([s.throughput for s in samples]),
        "ratio_to_durable_ceiling": (
            median([s.throughput / d.throughput for s, d in zip(samples, durable, strict=True)])
            if durable
            else None
        ),
        "p50_ms": median([percentile(s.latencies, 0.50) * 1000 for s in samples]),
        "p99_ms": median([percentile(s.latencies, 0.99) * 1000 for s in samples]),
        "ratio_to_ceiling": median(
            [s.throughput / c.throughput for s, c in zip(samples, ceiling, strict=True)]
        ),
        # the server's own CPU per request: where the time goes when the ratio is low
        "server_cpu_ms_per_request": median(
            [1000 * s.server_cpu_seconds / max(1, s.requests) for s in samples]
        ),
        "errors": sum(s.errors for s in samples),
        "requests": sum(s.requests for s in samples),
        "runs_requests_per_second": [round(s.throughput, 1) for s in samples],
    }


async def measure(
    *, runs: int, seconds: float, concurrency: int, users: int, folder: Path
) -> dict[str, Any]:
    targets: dict[str, ServerProcess] = {}
    async with contextlib.AsyncExitStack() as stack:
        port = free_port()
        ceiling = ServerProcess([PYTHON, "-m", "bench.ceiling", "--port", str(port)], port)
        targets["ceiling"] = await stack.enter_async_context(ceiling)
        databases = {"sqlite": sqlite_url(folder, "ingest.db")}
        if await postgres_available():
            databases["postgresql"] = await stack.enter_async_context(postgres_schema())
        for name, url in databases.items():
            durable_port = free_port()
            durable_url = sqlite_url(folder, "durable.db") if name == "sqlite" else url
            argv = [PYTHON, "-m", "bench.ceiling", "--port", str(durable_port)]
            durable = ServerProcess([*argv, "--database", durable_url], durable_port)
            targets[f"{DURABLE}{name}"] = await stack.enter_async_context(durable)
            server = pushgate_serve(
                settings_data(url, None),
                api_only=True,
                log_file=RESULTS / f"ingest-{name}.log",
            )
            targets[name] = await stack.enter_async_context(server)
            await register_devices(targets[name].url, users)

        body = notification_body(users)
        samples: dict[str, list[LoadResult]] = {name: [] for name in targets}
        async with client_session(concurrency) as session:

            async def load(name: str, length: float) -> LoadResult:
                cpu_before = cpu_seconds(targets[name].pid)
                result = await post_load(
                    session,
                    targets[name].url + "/v1/notifications",
                    body,
                    concurrency=concurrency,
                    seconds=length,
                )
                result.server_cpu_seconds = cpu_seconds(targets[name].pid) - cpu_before
                return result

            for name in targets:  # warm-up: connections, caches, the first JIT-free paths
                await load(name, 1.0)
            for _ in range(runs):
                for name in targets:
                    samples[name].append(await load(name, seconds))
    return {
        "concurrency": concurrency,
        "runs": runs,
        "seconds_per_run": seconds,
        "users": users,
        "targets": {
            name: summarise(values, samples["ceiling"], samples.get(f"{DURABLE}{name}"))
            for name, values in samples.items()
        },
    }


async def smoke(url: str) -> None:
    """One request, to fail fast with the server's answer when something is misconfigured."""
    async with (
        client_session(1) as session,
        session.post(f"{url}/v1/notifications", json=notification_body(1)(0)) as response,
    ):
        if response.status != 202:
            raise aiohttp.ClientError(f"{response.status}: {await response.text()}")
