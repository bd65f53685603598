"""Real ``pushgate serve`` processes against simulators that run in the test process.

The gateway runs as a child process (the ``pushgate`` console script), configured by a TOML file
written next to the test, and delivers to the APNs simulator on loopback inside pytest. Tests
look at two witnesses only: the database (the durable queue and journal) and what the simulator
recorded, so a SIGKILL of the child loses nothing that the test relies on.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from tokens.models import Device

APP_ID = "shop"
TOPIC = "com.example.shop"
STARTED_LINE = "delivery worker and scheduler started"
LISTENING_LINE = "listening on http://"
FINAL_NOTIFICATION_STATUSES = frozenset(NotificationStatus) - {
    NotificationStatus.QUEUED,
    NotificationStatus.DEFERRED,
}

# SQLModel leaves ``__table__`` untyped; core statements are what bulk seeding wants
devices = cast(sa.Table, Device.__table__)  # type: ignore[attr-defined]
notifications = cast(sa.Table, Notification.__table__)  # type: ignore[attr-defined]
deliveries = cast(sa.Table, Delivery.__table__)  # type: ignore[attr-defined]


def pushgate_command() -> list[str]:
    """The installed console script next to this interpreter, else the same entry point."""
    script = Path(sys.executable).with_name("pushgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import main; main()"]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    database_url: str,
    apns: dict[str, Any],
    delivery: dict[str, object],
    extra: str = "",
) -> Path:
    """A worker configuration: one app delivering to ``apns``, no sandbox, ``delivery`` knobs,
    and ``extra`` TOML appended as it is (more sections, ``[[api_keys]]``)."""
    lines = [
        "[server]",
        "port = 0  # every process serves HTTP (a worker its health and metrics): any free port",
        "",
        "[database]",
        f"url = {toml_value(database_url)}",
        "",
        "[sandbox]",
        "enabled = false",
        "",
        "[delivery]",
        *(f"{key} = {toml_value(value)}" for key, value in delivery.items()),
        "",
        "[[apps]]",
        f"id = {toml_value(APP_ID)}",
        "",
        "[apps.apns]",
    ]
    for key, value in apns.items():
        lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n\n" + extra, encoding="utf-8")
    return path


class GatewayProcess:
    """One ``pushgate serve`` child; its output goes to a log file, never to a pipe."""

    def __init__(self, config: Path, log_path: Path, *, args: Iterable[str] = ()) -> None:
        self.config = config
        self.log_path = log_path
        self.args = list(args)
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0  # where this run's output begins in the log file

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def start(self, *, within_seconds: float = 30.0) -> None:
        """Start the process and return once its worker runs and it listens (its log says
        both)."""
        assert self.process is None, "already started"
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env = {key: value for key, value in env.items() if not key.startswith("PUSHGATE_")}
        self.process = await asyncio.create_subprocess_exec(
            *pushgate_command(),
            "serve",
            "--config",
            str(self.config),
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        await wait_until(
            self._started,
            within_seconds=within_seconds,
            what=f"{self.log_path.name}: worker start",
        )

    async def _started(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(
                f"pushgate exited with {self.process.returncode}:\n{self.log_text()}"
            )
        output = self.log_path.read_bytes()[self._log_start :]
        return STARTED_LINE.encode() in output and LISTENING_LINE.encode() in output

    def http_url(self) -> str:
        """Where this run listens (``[server] port = 0`` picks a free port; the log says it)."""
        text = self.log_path.read_bytes()[self._log_start :].decode(errors="replace")
        found = re.search(re.escape(LISTENING_LINE) + r"(\S+)", text)
        assert found is not None, "the process has not said where it listens"
        return "http://" + found.group(1)

    def worker_owner(self) -> str:
        """The lease owner this run's delivery worker writes into the database."""
        text = self.log_path.read_bytes()[self._log_start :].decode(errors="replace")
        found = re.search(re.escape(STARTED_LINE) + r" \((\S+)\)", text)
        assert found is not None, "the worker has not started"
        return found.group(1)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay held in the database."""
        await self._end(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM and wait for the graceful shutdown (SIGKILL after a bound)."""
        await self._end(signal.SIGTERM)

    async def restart(self) -> None:
        """Start again after :meth:`kill` or :meth:`stop`, with the same configuration."""
        assert self.process is not None and self.process.returncode is not None
        self.process = None
        await self.start()

    async def _end(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._log is not None and not self._log.closed:
            self._log.close()

    async def close(self) -> None:
        """Teardown: whatever state it is in, the process is gone afterwards."""
        await self._end(signal.SIGKILL)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    within_seconds: float,
    what: str,
    interval: float = 0.1,
) -> float:
    """Poll ``condition`` until true; returns the seconds it took, fails after
    ``within_seconds``."""
    started = time.monotonic()
    while not await condition():
        elapsed = time.monotonic() - started
        if elapsed > within_seconds:
            raise AssertionError(f"gave up after {within_seconds:.0f}s waiting for {what}")
        await asyncio.sleep(interval)  # wait-ok: polling interval
    return time.monotonic() - started


@dataclass(frozen=True)
class Seeded:
    """What was put in the database: each notification's one device token."""

    token_by_notification: dict[str, str]

    @property
    def tokens(self) -> set[str]:
        return set(self.token_by_notification.values())


def active_ios_device(user_id: str, token: str, now: datetime) -> dict[str, Any]:
    """A ``devices`` row: ``user_id``'s active iOS device in :data:`APP_ID`, with ``token``."""
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id,
        "app": APP_ID,
        "platform": "ios",
        "token": token,
        "environment": "production",
        "permission": "granted",
        "status": "active",
        "created_at": now,
        "last_seen_at": now,
        "updated_at": now,
    }


async def seed_due_deferred(
    engine: AsyncEngine, *, count: int, now: datetime, chunk: int = 5000
) -> Seeded:
    """``count`` users with one iOS device each and one transactional notification each,
    deferred until a moment already past: the release job finds them all due at once."""
    rows_devices: list[dict[str, Any]] = []
    rows_notifications: list[dict[str, Any]] = []
    token_by_notification: dict[str, str] = {}
    due = now - timedelta(minutes=1)
    for index in range(count):
        user_id = f"user-{index}"
        token = secrets.token_hex(32)
        notification_id = str(uuid.uuid4())
        token_by_notification[notification_id] = token
        rows_devices.append(active_ios_device(user_id, token, now))
        rows_notifications.append(
            {
                "id": notification_id,
                "user_id": user_id,
                "app": APP_ID,
                "tier": "transactional",
                "classified_by": "tier",
                "status": NotificationStatus.DEFERRED,
                "reason": "quiet_hours",
                "title": "Your order shipped",
                "body": f"Order {index}",
                "sender": "seed",
                "deliver_at": due,
                "expires_at": now + timedelta(hours=6),
                "created_at": due,
                "updated_at": due,
            }
        )
    async with engine.begin() as connection:
        for start in range(0, count, chunk):
            await connection.execute(
                sa.insert(devices),
                rows_devices[start : start + chunk],
            )
            await connection.execute(
                sa.insert(notifications),
                rows_notifications[start : start + chunk],
            )
    return Seeded(token_by_notification)


async def notification_status_counts(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(notifications.c.status, sa.func.count()).group_by(notifications.c.status)
        )
        return Counter({status: count for status, count in rows.all()})


async def all_final(engine: AsyncEngine, total: int) -> bool:
    counts = await notification_status_counts(engine)
    return sum(counts[status] for status in FINAL_NOTIFICATION_STATUSES) == total


@dataclass(frozen=True)
class DeliveryRow:
    token: str
    status: str
    attempts: int
    lease_owner: str | None


async def delivery_rows(engine: AsyncEngine) -> list[DeliveryRow]:
    """Every delivery with its device token."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(
                devices.c.token,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.lease_owner,
            ).join(devices, devices.c.id == deliveries.c.device_id)
        )
        return [DeliveryRow(*row) for row in rows.all()]


async def sent_delivery_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.execute(
            sa.select(sa.func.count())
            .select_from(deliveries)
            .where(deliveries.c.status == DeliveryStatus.SENT)
        )
        return int(count.scalar_one())
