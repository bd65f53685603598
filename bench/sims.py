"""The APNs and FCM simulators in a process of their own, for the benchmarks.

Run by :class:`bench.stack.SimulatorProcess`, not by hand. It prints one JSON line with the
``[apps.apns]`` and ``[apps.fcm]`` sections that reach it, then answers commands read from stdin,
one per line, each with one JSON line:

- ``stats``: requests answered, the peak number of requests in flight at once (over all
  connections, APNs and FCM separately) since the last ``reset``;
- ``reset``: the same answer as ``stats``, then zero the counters and forget the recorded
  requests (so a soak does not grow the simulator's memory);
- ``latency MS``: from now on APNs answers every request after ``MS`` milliseconds (``0``: at
  once), as a real provider's round trip does, so that requests pile up in flight and a
  concurrency limit is actually tested; answers like ``stats``;
- ``stop`` or end of input: exit.

A separate process keeps the simulators' HTTP/2 and JSON work off the event loop (and the core)
of whatever is measured against them. The process also exits on its own after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.simulators.apns import ApnsReply, ApnsSimulator
from gateway.simulators.fcm import FcmSimulator

APNS_TOPIC = "com.example.bench"
FCM_PROJECT = "pushgate-bench"


class CountingApnsSimulator(ApnsSimulator):
    """Tracks the peak of requests in flight over all connections (the base class tracks the
    peak per connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0
        self.peak_in_flight = 0

    def _answer(self, headers: dict[str, str], body: bytes, auth_error: str | None) -> ApnsReply:
        in_flight = sum(len(connection.in_flight) for connection in self._connections)
        self.peak_in_flight = max(self.peak_in_flight, in_flight)
        self.answered += 1
        return super()._answer(headers, body, auth_error)


class CountingFcmSimulator(FcmSimulator):
    """Tracks send requests in flight and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    async def _handle_send(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await super()._handle_send(request)
        finally:
            self.in_flight -= 1
            self.answered += 1


def stats(apns: CountingApnsSimulator, fcm: CountingFcmSimulator) -> dict[str, int]:
    return {
        "apns_answered": apns.answered,
        "apns_peak_in_flight": apns.peak_in_flight,
        "fcm_answered": fcm.answered,
        "fcm_peak_in_flight": fcm.peak_in_flight,
    }


def reset(apns: CountingApnsSimulator, fcm: CountingFcmSimulator) -> None:
    apns.answered = apns.peak_in_flight = 0
    fcm.answered = fcm.peak_in_flight = 0
    apns.requests.clear()
    apns.answered_tokens.clear()
    fcm.requests.clear()


def read_commands() -> asyncio.Queue[str]:
    """Lines of stdin, stripped, then ``""`` at its end; read by a daemon thread so that a
    pending read never holds the process open."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, "")

    threading.Thread(target=read, name="commands", daemon=True).start()
    return queue


async def serve(max_seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="pushgate-bench-sims-") as folder:
        apns, fcm = CountingApnsSimulator(), CountingFcmSimulator()
        async with apns, fcm:
            sections: dict[str, Any] = {
                "apns": apns.apns_config(APNS_TOPIC),
                "fcm": fcm.fcm_config(Path(folder), FCM_PROJECT),
            }
            print(json.dumps(sections, default=str), flush=True)
            commands = read_commands()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_seconds
            while loop.time() < deadline:
                try:
                    command = await asyncio.wait_for(commands.get(), deadline - loop.time())
                except TimeoutError:
                    break
                if command in ("", "stop"):
                    break
                if command.startswith("latency "):
                    apns.clear_script()
                    delay = float(command.split()[1]) / 1000
                    if delay > 0:
                        apns.script(ApnsReply(delay=delay))
                print(json.dumps(stats(apns, fcm)), flush=True)
                if command == "reset":
                    reset(apns, fcm)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    asyncio.run(serve(args.max_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
