"""A graceful stop lets running scheduler jobs finish instead of cancelling them mid-query."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.runtime import Role, build_runtime
from tests.api.conftest import make_settings


async def test_stopping_waits_for_a_running_job_instead_of_cancelling_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'stop.db'}", delivery={"poll_interval_seconds": 0.01}
    )
    started, finish = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow_release() -> int:
        started.set()
        await finish.wait()  # as if a large release were mid-transaction
        finished.append("release")
        return 0

    async with build_runtime(settings, role=Role.WORKER) as runtime:
        jobs = runtime.jobs
        assert jobs is not None
        jobs.release = slow_release  # type: ignore[method-assign]
        scheduler = AsyncIOScheduler(timezone="UTC")
        jobs.schedule(scheduler)
        with caplog.at_level(logging.INFO):
            scheduler.start()
            async with asyncio.timeout(30):  # a guard, not a measurement
                await started.wait()
            stopping = asyncio.create_task(jobs.stop(scheduler, grace_seconds=60))
            await asyncio.sleep(0)
            assert not stopping.done()  # it waits for the job
            finish.set()
            await stopping

    assert finished == ["release"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
