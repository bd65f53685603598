"""Fixtures for tests that run real ``pushgate serve`` processes: an APNs simulator in the test
process and a factory for gateway processes that are always killed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from gateway.simulators.apns import ApnsSimulator
from tests.multiprocess.harness import GatewayProcess

GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
async def apns() -> AsyncIterator[ApnsSimulator]:
    async with ApnsSimulator() as simulator:
        yield simulator


@pytest.fixture
async def gateways(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """``gateways(config, name, args=[...])`` makes a (not yet started) gateway process; every
    one made is killed when the test ends, whatever happened."""
    made: list[GatewayProcess] = []

    def make(config: Path, name: str, args: Iterable[str] = ()) -> GatewayProcess:
        process = GatewayProcess(config, tmp_path / f"{name}.log", args=args)
        made.append(process)
        return process

    try:
        yield make
    finally:
        for process in made:
            await process.close()
