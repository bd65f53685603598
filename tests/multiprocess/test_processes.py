"""``pushgate serve --processes 2``: two API processes share one port, the first also delivers.

Requests on fresh connections spread over both processes (the JSON log names the process of
each request); every notification is delivered exactly once by the one worker; ``/metrics``
answers for both processes, whichever one takes the scrape. On PostgreSQL the worker polls only
once an hour here, so the deliveries of notifications accepted by the other process prove the
wake-up it sends through the database. One child dying stops the group (exit 1), and SIGTERM
stops it cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli import cli
from gateway.simulators.apns import ApnsSimulator
from tests.api.conftest import sha
from tests.multiprocess.conftest import GatewayFactory
from tests.multiprocess.harness import (
    APP_ID,
    LISTENING_LINE,
    TOPIC,
    GatewayProcess,
    active_ios_device,
    all_final,
    devices,
    wait_until,
    write_config,
)
from tests.multiprocess.test_worker_endpoints import json_events, sample_value

KEY = "two-process-key"
NOTIFICATIONS = 120
STARTED_CHILD = re.compile(r"started process (\d+) of (\d+) \(pid (\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def two_process_config(
    tmp_path: Path, database_url: str, apns: ApnsSimulator, *, poll_seconds: float
) -> Path:
    config = write_config(
        tmp_path / "pushgate.toml",
        database_url=database_url,
        apns=apns.apns_config(TOPIC),
        delivery={"poll_interval_seconds": poll_seconds},
        extra=f"""
[logging]
format = "json"
level = "debug"  # one http.request event per request, naming its process

[[api_keys]]
name = "service"
key_sha256 = "{sha(KEY)}"
allowed_tiers = ["transactional"]
scopes = ["send", "metrics"]
""",
    )
    text = config.read_text(encoding="utf-8")
    port_line = re.search(r"^port = 0.*$", text, flags=re.MULTILINE)
    assert port_line is not None
    config.write_text(text.replace(port_line.group(0), f"port = {free_port()}"), encoding="utf-8")
    return config


async def start_group(gateway: GatewayProcess) -> dict[int, int]:
    """Start the supervisor and wait until both children listen; returns pid by child number."""
    await gateway.start()  # the first child delivers and listens
    await wait_until(
        lambda: _listening_twice(gateway), within_seconds=60, what="both children listening"
    )
    return {
        int(found.group(1)): int(found.group(3))
        for found in STARTED_CHILD.finditer(gateway.log_text())
    }


async def _listening_twice(gateway: GatewayProcess) -> bool:
    return gateway.log_text().count(LISTENING_LINE) >= 2


async def seed_devices(engine: AsyncEngine, count: int) -> dict[str, str]:
    """One iOS device for each of ``count`` users; returns the token by user."""
    now = datetime.now(UTC)
    tokens = {f"user-{index}": secrets.token_hex(32) for index in range(count)}
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(devices),
            [active_ios_device(user, token, now) for user, token in tokens.items()],
        )
    return tokens


async def test_two_api_processes_share_the_port_and_one_worker_delivers_everything(
    engine: AsyncEngine,
    database_url: str,
    apns: ApnsSimulator,
    gateways: GatewayFactory,
    tmp_path: Path,
) -> None:
    postgres = database_url.startswith("postgresql")
    tokens = await seed_devices(engine, NOTIFICATIONS)
    # On PostgreSQL only the wake-up through the database can make the worker deliver what the
    # other process accepted before the test gives up; SQLite has no such channel and polls.
    config = two_process_config(
        tmp_path, database_url, apns, poll_seconds=3600 if postgres else 0.2
    )
    gateway = gateways(config, "group", args=["--processes", "2"])
    children = await start_group(gateway)
    assert sorted(children) == [1, 2]
    url = gateway.http_url()
    auth = {"Authorization": f"Bearer {KEY}"}

    # a fresh connection per request, so the kernel picks a process for each
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), headers=auth
    ) as http:

        async def send(user: str) -> int:
            body = {"user_id": user, "app": APP_ID, "tier": "transactional", "body": "Shipped"}
            async with http.post(f"{url}/v1/notifications", json=body) as response:
                return response.status

        statuses = await asyncio.gather(*(send(user) for user in tokens))
        assert Counter(statuses) == {202: NOTIFICATIONS}
        await wait_until(
            lambda: all_final(engine, NOTIFICATIONS),
            within_seconds=120,
            what="every notification delivered",
        )
        scrapes = []
        for _ in range(6):  # whichever process answers, the figures are the group's
            async with http.get(f"{url}/metrics") as response:
                assert response.status == 200
                scrapes.append(await response.text())

    assert Counter(request.token for request in apns.requests) == Counter(
        {token: 1 for token in tokens.values()}
    )
    for text in scrapes:
        accepted = sample_value(
            text,
            "pushgate_http_requests_total",
            route="/v1/notifications",
            method="POST",
            status="202",
        )
        assert accepted == NOTIFICATIONS
        sent = sample_value(
            text, "pushgate_deliveries_total", provider="apns", app=APP_ID, outcome="sent"
        )
        assert sent == NOTIFICATIONS

    events = json_events(gateway.log_text())
    served_by = Counter(
        event["process"]
        for event in events
        if event.get("event") == "http.request" and event.get("path") == "/v1/notifications"
    )
    assert set(served_by) == set(children.values())  # both processes took requests
    assert sum(served_by.values()) == NOTIFICATIONS

    await gateway.stop()
    assert gateway.process is not None and gateway.process.returncode == 0
    for pid in children.values():
        assert not _alive(pid)


async def test_a_child_that_dies_stops_the_group(
    database_url: str, apns: ApnsSimulator, gateways: GatewayFactory, tmp_path: Path
) -> None:
    config = two_process_config(tmp_path, database_url, apns, poll_seconds=0.2)
    gateway = gateways(config, "group", args=["--processes", "2"])
    children = await start_group(gateway)
    os.kill(children[2], signal.SIGKILL)
    assert gateway.process is not None
    async with asyncio.timeout(60):
        code = await gateway.process.wait()
    assert code == 1
    assert not _alive(children[1])
    lines = [event["message"] for event in json_events(gateway.log_text())]
    assert any("exited with code -9; stopping the others" in line for line in lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("args", "port", "message"),
    [
        (["--processes", "0"], 8080, "0 is not in the range x>=1"),
        (["--processes", "2", "--worker-only"], 8080, "--worker-only serves no API"),
        (["--processes", "2"], 0, "--processes needs a fixed server.port"),
    ],
)
def test_processes_refuses_what_cannot_work(
    tmp_path: Path, args: list[str], port: int, message: str
) -> None:
    config = tmp_path / "pushgate.toml"
    config.write_text(
        f'[server]\nport = {port}\n\n[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/p.db"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), *args])
    assert result.exit_code == 2
    assert message in result.output
