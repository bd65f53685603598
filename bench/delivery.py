"""Delivery: accepted → delivered at the simulator, the pipeline against the raw client.

The simulators run in their own process (:mod:`bench.sims`). Each run seeds ``count`` queued
notifications for users with one device each (rows, as ``POST /v1/notifications`` leaves them:
a ``queued`` notification and a ``pending`` delivery), then times :class:`DeliveryWorker` rounds
(claim and lease → build messages → provider → simulator → record each report → finish the
notification) until a round claims nothing, i.e. until every delivery is recorded as sent. The
ceiling, in the same run, is the raw client sending the same number of messages to the same
simulator: unmodified ``aioapns`` (``asyncio.gather`` over every send with as many in flight as
the gateway allows itself, ``delivery.concurrency_per_app``, over as many connections as
:class:`ApnsProvider` opens) and firebase-admin's ``send_each_async`` (batches of 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import firebase_admin
import google.auth.transport.requests
from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol
from firebase_admin import credentials, messaging
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.bench_providers_fcm import new_token, raw_messages
from bench.sims import APNS_TOPIC
from bench.stack import (
    APP,
    SimulatorProcess,
    machine_busy_seconds,
    make_settings,
    median,
    postgres_available,
    postgres_schema,
    settings_data,
    sqlite_url,
)
from gateway.config import Settings
from gateway.db import create_engine, session_factory, transaction, upgrade_database
from gateway.delivery.worker import DeliveryWorker, RoundResult
from gateway.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from gateway.providers.apns import ApnsProvider
from gateway.runtime import Role, Runtime, build_runtime
from gateway.services.context import Clock, system_clock
from tokens.models import Device

Platform = str  # "ios" | "android"


def device_token(platform: Platform) -> str:
    return secrets.token_hex(32) if platform == "ios" else new_token()


async def seed_devices(
    sessions: async_sessionmaker[AsyncSession], users: list[str], platform: Platform, now: datetime
) -> dict[str, str]:
    """One active device per user; returns device id by user."""
    devices = [
        Device(
            user_id=user,
            app=APP,
            platform=platform,
            token=device_token(platform),
            permission="granted",
            created_at=now,
            last_seen_at=now,
            updated_at=now,
        )
        for user in users
    ]
    async with transaction(sessions) as session:
        session.add_all(devices)
    return {device.user_id: device.id for device in devices}


async def seed_queued(
    sessions: async_sessionmaker[AsyncSession],
    devices: dict[str, str],
    platform: Platform,
    now: datetime,
) -> None:
    """A queued notification with its pending delivery for every (user, device)."""
    notifications = {
        user: Notification(
            user_id=user,
            app=APP,
            tier="transactional",
            category="order_shipped",
            classified_by="category",
            status=NotificationStatus.QUEUED,
            title="Your order shipped",
            body="It arrives Tuesday",
            data={"order_id": secrets.token_hex(4)},
            sender="bench",
            deliver_at=now,
            counted_at=now,
            expires_at=now + timedelta(hours=1),
            created_at=now,
            updated_at=now,
        )
        for user in devices
    }
    async with transaction(sessions) as session:
        session.add_all(notifications.values())
        await session.flush()  # the deliveries' foreign key needs the rows first
        session.add_all(
            Delivery(
                notification_id=notifications[user].id,
                device_id=device_id,
                platform=platform,
                app=APP,
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            for user, device_id in devices.items()
        )


def worker_runtime(
    settings: Settings, engine: AsyncEngine, clock: Clock = system_clock
) -> contextlib.AbstractAsyncContextManager[Runtime]:
    """The delivery side exactly as ``pushgate serve --worker-only`` builds it."""
    return build_runtime(settings, role=Role.WORKER, engine=engine, clock=clock)


async def drain(worker: DeliveryWorker) -> RoundResult:
    """What :meth:`DeliveryWorker.run` does while work is waiting: rounds until one comes back
    short, the next claimed while the previous is sent; returns the totals."""
    return await worker.drain()


# -- the ceilings ----------------------------------------------------------------------------


def raw_apns_client(sections: dict[str, Any]) -> APNs:
    """Unmodified aioapns, redirected to the simulator through its protocol class (as in
    :mod:`bench.bench_providers_apns`)."""
    apns = sections["apns"]
    client = APNs(
        key=Path(apns["key_file"]).read_text(encoding="ascii"),
        key_id=apns["key_id"],
        team_id=apns["team_id"],
        topic=APNS_TOPIC,
        max_connections=ApnsProvider.MAX_CONNECTIONS,
        ssl_context=ssl.create_default_context(cafile=apns["ca_file"]),
    )
    client.pool.protocol_class = type(
        "SimulatorProtocol",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": "127.0.0.1", "APNS_PORT": int(apns["endpoint"].rsplit(":", 1)[1])},
    )
    return client


async def raw_apns_send(client: APNs, count: int, concurrency: int) -> int:
    """``count`` sends, at most ``concurrency`` in flight: the gateway's own limit. Unbounded,
    aioapns is erratic past a few hundred in flight (measured at 2,000: from 1,400 to 4,400
    sends/s run to run, against a steady 4,100-4,600 with 64), which would make the ceiling
    noise rather than a bound."""
    requests = [
        NotificationRequest(
            device_token=secrets.token_hex(32),
            message={"aps": {"alert": {"title": "Your order shipped", "body": "Tuesday"}}},
            priority=10,
            push_type=PushType.ALERT,
            time_to_live=3600,
        )
        for _ in range(count)
    ]
    in_flight = asyncio.Semaphore(concurrency)

    async def send(request: NotificationRequest) -> bool:
        async with in_flight:
            return bool((await client.send_notification(request)).is_successful)

    return sum(await asyncio.gather(*(send(request) for request in requests)))


async def raw_fcm_case(
    sections: dict[str, Any],
) -> tuple[Callable[[int], Awaitable[int]], Callable[[], Awaitable[None]]]:
    fcm = sections["fcm"]
    account = credentials.Certificate(fcm["service_account_file"])
    app = firebase_admin.initialize_app(account, name=f"bench-raw-{secrets.token_hex(3)}")
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{fcm['endpoint']}/v1/projects/{fcm['project_id']}/messages:send"
    credential = app.credential.get_credential()
    await asyncio.to_thread(credential.refresh, google.auth.transport.requests.Request())

    async def send(count: int) -> int:
        messages = raw_messages(count)
        sent = 0
        for start in range(0, count, 500):
            response = await messaging.send_each_async(messages[start : start + 500], app=app)
            sent += response.success_count
        return sent

    async def close() -> None:
        await service._async_client.aclose()
        await asyncio.to_thread(firebase_admin.delete_app, app)

    return send, close


# -- the measurement -------------------------------------------------------------------------


async def measure_database(
    sims: SimulatorProcess, database_url: str, *, runs: int, counts: dict[str, int]
) -> dict[str, Any]:
    settings = make_settings(settings_data(database_url, sims.sections))
    engine = create_engine(settings.database)
    await upgrade_database(engine)
    sessions = session_factory(engine)
    stack = contextlib.AsyncExitStack()
    runtime = await stack.enter_async_context(worker_runtime(settings, engine))
    assert runtime.worker is not None
    worker = runtime.worker
    raw_apns = raw_apns_client(sims.sections)
    raw_fcm_send, raw_fcm_close = await raw_fcm_case(sims.sections)
    samples: dict[str, list[float]] = {
        "apns-pipeline": [],
        "apns-raw": [],
        "fcm-pipeline": [],
        "fcm-raw": [],
    }
    # CPU of this process (the worker, its SQLite thread, the raw clients) per message sent
    cpu_ms: dict[str, list[float]] = {key: [] for key in samples}
    # cores of the whole machine busy meanwhile (simulator, database server, this process)
    cores_busy: dict[str, list[float]] = {key: [] for key in samples}
    peaks: dict[str, int] = {}
    try:
        platforms = {"apns": "ios", "fcm": "android"}
        devices = {
            name: await seed_devices(
                sessions,
                [f"{name}-user-{i}" for i in range(counts[name])],
                platform,
                system_clock(),
            )
            for name, platform in platforms.items()
        }

        async def pipeline(name: str) -> float:
            count = counts[name]
            await seed_queued(sessions, devices[name], platforms[name], system_clock())
            await sims.reset()
            cpu_started, busy_started = time.process_time(), machine_busy_seconds()
            started = asyncio.get_running_loop().time()
            total = await drain(worker)
            elapsed = asyncio.get_running_loop().time() - started
            cpu_ms[f"{name}-pipeline"].append((time.process_time() - cpu_started) * 1000 / count)
            cores_busy[f"{name}-pipeline"].append((machine_busy_seconds() - busy_started) / elapsed)
            stats = await sims.stats()
            if total.finished_notifications != count or stats[f"{name}_answered"] != count:
                raise RuntimeError(f"{name} pipeline: {total} / simulator {stats}")
            peaks[name] = max(peaks.get(name, 0), stats[f"{name}_peak_in_flight"])
            return count / elapsed

        async def raw(name: str) -> float:
            count = counts[name]
            await sims.reset()
            cpu_started, busy_started = time.process_time(), machine_busy_seconds()
            started = asyncio.get_running_loop().time()
            sent = await (
                raw_apns_send(raw_apns, count, settings.delivery.concurrency_per_app)
                if name == "apns"
                else raw_fcm_send(count)
            )
            elapsed = asyncio.get_running_loop().time() - started
            cpu_ms[f"{name}-raw"].append((time.process_time() - cpu_started) * 1000 / count)
            cores_busy[f"{name}-raw"].append((machine_busy_seconds() - busy_started) / elapsed)
            if sent != count:
                raise RuntimeError(f"{name} raw: {sent} of {count} sent")
            return count / elapsed

        for name in platforms:  # warm-up: connections, JWT / OAuth token, statement caches
            await pipeline(name)
            await raw(name)
        for _ in range(runs):
            for name in platforms:
                samples[f"{name}-pipeline"].append(await pipeline(name))
                samples[f"{name}-raw"].append(await raw(name))
    finally:
        raw_apns.pool.close()
        await raw_fcm_close()
        await stack.aclose()
        await engine.dispose()
    result: dict[str, Any] = {}
    for name in platforms:
        pipe, ceiling = samples[f"{name}-pipeline"], samples[f"{name}-raw"]
        result[name] = {
            "pipeline_per_second": median(pipe),
            "raw_per_second": median(ceiling),
            "ratio_to_raw": median([p / c for p, c in zip(pipe, ceiling, strict=True)]),
            "pipeline_cpu_ms_per_delivery": median(cpu_ms[f"{name}-pipeline"]),
            "raw_cpu_ms_per_send": median(cpu_ms[f"{name}-raw"]),
            "pipeline_machine_cores_busy": median(cores_busy[f"{name}-pipeline"]),
            "raw_machine_cores_busy": median(cores_busy[f"{name}-raw"]),
            "peak_in_flight_at_simulator": peaks.get(name, 0),
            "runs_pipeline_per_second": [round(v, 1) for v in pipe],
            "runs_raw_per_second": [round(v, 1) for v in ceiling],
        }
    return result


async def measure(*, runs: int, count: int, folder: Path) -> dict[str, Any]:
    """``count`` APNs sends per run, a quarter of that (at least 100) for FCM: raw
    ``send_each_async`` is slow enough on loopback to dominate the run time otherwise."""
    counts = {"apns": count, "fcm": max(100, count // 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # firebase Message.token
        async with SimulatorProcess() as sims:
            results = {
                "sqlite": await measure_database(
                    sims, sqlite_url(folder, "delivery.db"), runs=runs, counts=counts
                )
            }
            if await postgres_available():
                async with postgres_schema() as url:
                    results["postgresql"] = await measure_database(
                        sims, url, runs=runs, counts=counts
                    )
    return {"runs": runs, "notifications_per_run": counts, "databases": results}


def now() -> datetime:
    return datetime.now(UTC)
