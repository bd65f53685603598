"""What the benchmarks share: configuration, the simulator and server processes, databases,
the load generator and the statistics.

Every process started here binds 127.0.0.1, is stopped by the context that started it, and
also exits on its own after a bound (``--max-seconds`` for the simulators, SIGKILL after a grace
period for servers), so an interrupted benchmark leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from gateway.config import DatabaseConfig, Settings, load_settings
from gateway.db import create_engine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
API_KEY = "bench-key"
APP = "bench"
POSTGRES_URL = os.environ.get(
    "PUSHGATE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int | None = None) -> float:
    """A process's resident set now, from ``/proc`` (the benchmarks run on Linux)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, every core), from
    ``/proc/stat``: with the simulator, the database server and the measured process sharing
    the cores, this says whether the machine, not the code, was the limit."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib() -> float:
    """This process's peak resident set (Linux reports ``ru_maxrss`` in KiB)."""
    import resource  # noqa: PLC0415  (POSIX only; the benchmarks run on Linux)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- configuration ---------------------------------------------------------------------------


def settings_data(
    database_url: str, sections: dict[str, Any] | None, **overrides: Any
) -> dict[str, Any]:
    """A configuration (as ``load_settings`` keyword arguments) with one app, ``bench``,
    delivering to the simulator process's ``sections`` (or to nothing: API-only benchmarks),
    and one API key, :data:`API_KEY`, allowed every tier."""
    app: dict[str, Any] = {"id": APP, "channels": {"transactional": "orders"}}
    if sections is not None:
        app.update(sections)
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "sandbox": {"enabled": sections is None},
        "policy": {"default_timezone": "UTC"},
        "categories": {"order_shipped": "transactional"},
        "apps": [app],
        "api_keys": [
            {
                "name": "bench",
                "key_sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                "allowed_tiers": ["transactional", "behavioral", "promotional"],
                "scopes": ["*"],
            }
        ],
    }
    data.update(overrides)
    return data


def make_settings(data: dict[str, Any]) -> Settings:
    return load_settings(None, **data)


def settings_environment(data: dict[str, Any]) -> dict[str, str]:
    """The same configuration as ``PUSHGATE_*`` variables (each top-level key as JSON), for a
    ``pushgate serve`` child: the way an operator would override a config file."""
    environment = {key: value for key, value in os.environ.items() if key != "PUSHGATE_CONFIG"}
    for key, value in data.items():
        environment[f"PUSHGATE_{key.upper()}"] = json.dumps(value)
    return environment


# -- databases -------------------------------------------------------------------------------


def sqlite_url(folder: Path, name: str) -> str:
    return f"sqlite+aiosqlite:///{folder / name}"


async def postgres_available() -> bool:
    engine = create_engine(DatabaseConfig(url=POSTGRES_URL))
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # any failure means "not here"
        return False
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A throwaway schema on the local PostgreSQL; yields a URL with it as the search path."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(DatabaseConfig(url=POSTGRES_URL))
    try:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}search_path={schema}"
    finally:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


def run_measure_process(
    measure: Callable[[int, str], Awaitable[dict[str, Any]]], *, default_count: int, doc: str
) -> int:
    """The ``main`` of a measure :mod:`bench.run` starts in a process of its own (so that its
    peak RSS is its own): ``--count``, ``--database``, a ``--folder`` for SQLite files and the
    ``--out`` JSON file. ``measure(count, database_url)`` runs on a fresh database each time."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--count", type=int, default=default_count)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for stale in args.folder.glob(f"{args.out.stem}.db*"):  # a fresh database for every run
        stale.unlink()

    async def on_database() -> dict[str, Any]:
        if args.database == "postgresql":
            async with postgres_schema() as url:
                return await measure(args.count, url)
        return await measure(args.count, sqlite_url(args.folder, f"{args.out.stem}.db"))

    result = asyncio.run(on_database())
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


# -- processes -------------------------------------------------------------------------------


class SimulatorProcess:
    """:mod:`bench.sims` as a child process; see there for the commands."""

    def __init__(self, max_seconds: float = 1800.0) -> None:
        self.max_seconds = max_seconds
        self.sections: dict[str, Any] = {}
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SimulatorProcess:
        self._process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "bench.sims",
            "--max-seconds",
            str(self.max_seconds),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.sections = await self._read()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def _read(self) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the simulator process exited")
        result: dict[str, Any] = json.loads(line)
        return result

    async def command(self, command: str) -> dict[str, int]:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        await self._process.stdin.drain()
        return await self._read()

    async def stats(self) -> dict[str, int]:
        return await self.command("stats")

    async def reset(self) -> dict[str, int]:
        return await self.command("reset")


class ServerProcess:
    """A child process serving HTTP on ``port`` (``pushgate serve`` or :mod:`bench.ceiling`),
    ready once ``ready_path`` answers 200."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        *,
        environment: dict[str, str] | None = None,
        log_file: Path | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.argv = argv
        self.port = port
        self.environment = environment
        self.log_file = log_file
        self.ready_path = ready_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> ServerProcess:
        log = self.log_file.open("wb") if self.log_file else subprocess.DEVNULL
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        if self.log_file:
            assert not isinstance(log, int)
            log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(f"{self.argv} exited with {self._process.returncode}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + self.ready_path) as response:
                        if response.status == 200:
                            return self
                if time.monotonic() > deadline:
                    await self.__aexit__()
                    raise RuntimeError(f"{self.argv} did not become ready in 60 s")
                await asyncio.sleep(0.1)

    async def __aexit__(self, *_exc: object) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


def pushgate_serve(
    data: dict[str, Any],
    *,
    api_only: bool = False,
    log_file: Path | None = None,
    processes: int = 1,
) -> ServerProcess:
    """The real ``pushgate serve`` (all roles, or ``--api-only``; ``processes`` > 1: that many
    processes on the port, ``--processes N``) on a free loopback port."""
    port = free_port()
    data = {**data, "server": {"host": "127.0.0.1", "port": port}}
    argv = [str(Path(PYTHON).with_name("pushgate")), "serve"]
    if api_only:
        argv.append("--api-only")
    if processes > 1:
        argv += ["--processes", str(processes)]
    return ServerProcess(argv, port, environment=settings_environment(data), log_file=log_file)


# -- load ------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def post_load(
    session: aiohttp.ClientSession,
    url: str,
    bodies: Callable[[int], dict[str, Any]],
    *,
    concurrency: int,
    seconds: float,
    expected_status: int = 202,
    rate: float | None = None,
) -> LoadResult:
    """POST JSON from ``concurrency`` loops for ``seconds`` (``rate``: at most that many
    requests per second in total, evenly paced), timing each request."""
    result = LoadResult()
    counter = iter(range(10**12))
    loop = asyncio.get_running_loop()
    started = loop.time()
    stop_at = started + seconds
    interval = concurrency / rate if rate else 0.0

    async def one_loop(offset: int) -> None:
        next_at = started + (interval * offset / concurrency)
        while True:
            if interval:
                next_at += interval
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            if loop.time() >= stop_at:
                return
            body = bodies(next(counter))
            sent = time.perf_counter()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            result.latencies.append(time.perf_counter() - sent)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != expected_status:
                result.errors += 1

    await asyncio.gather(*(one_loop(offset) for offset in range(concurrency)))
    result.seconds = loop.time() - started
    return result


def client_session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
