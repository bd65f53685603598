"""Throughput baseline: raw firebase-admin ``send_each_async`` against the FCM simulator, and
FcmProvider over it.

Run from the repository root::

    .venv/bin/python -m bench.bench_providers_fcm            # 5 runs of 200 sends per case
    .venv/bin/python -m bench.bench_providers_fcm --runs 9 --sends 1000

Both talk to the same in-process :class:`FcmSimulator` over HTTP on loopback, in the same event
loop, each sending ``--sends`` messages (in ``send_each_async`` batches of 500) after a warm-up
burst, interleaved run by run so a busy machine slows both alike. Cases:

- ``raw``: unmodified ``messaging.send_each_async`` on a firebase app whose messaging service
  URL points at the simulator (its OAuth token fetched beforehand in a thread: firebase-admin
  would fetch it with a blocking call on the loop, deadlocking with an in-process simulator).
- ``provider``: :meth:`FcmProvider.send` with equivalent :class:`PushMessage` values: payload
  mapping, per-loop client, bounded in-flight requests, classification into reports.

Client and simulator share one process and one core, so the absolute figures are a floor, not
what Google would see; the ratio is the point. The table goes to stdout and the numbers to
``bench/results/providers-fcm.json``.
"""

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import firebase_admin
import google.auth.transport.requests
from firebase_admin import credentials, messaging

from gateway.providers.base import AppProfile, PushMessage
from gateway.providers.fcm import FcmConfig, FcmProvider
from gateway.simulators.fcm import FcmSimulator
from policies.tiers import Tier
from tokens.reports import Outcome

RESULTS = Path(__file__).resolve().parent / "results" / "providers-fcm.json"
PROJECT = "pushgate-bench"
BATCH = 500


def new_token() -> str:
    return f"{secrets.token_urlsafe(8)}:APA91b{secrets.token_urlsafe(48)}"


def raw_messages(count: int) -> list[messaging.Message]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Message.token, see fcm.py
        return [
            messaging.Message(
                token=new_token(),
                notification=messaging.Notification(title="Your order shipped", body="Tuesday"),
                android=messaging.AndroidConfig(
                    priority="high",
                    ttl=3600,
                    notification=messaging.AndroidNotification(channel_id="orders"),
                ),
            )
            for _ in range(count)
        ]


def push_messages(count: int) -> list[PushMessage]:
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    return [
        PushMessage(
            token=new_token(),
            tier=Tier.TRANSACTIONAL,
            expires_at=expires_at,
            title="Your order shipped",
            body="Tuesday",
        )
        for _ in range(count)
    ]


async def raw_case(
    simulator: FcmSimulator, folder: Path
) -> tuple[Callable[[int], Awaitable[int]], Callable[[], Awaitable[None]]]:
    account = simulator.write_service_account(folder / "raw.json", PROJECT)
    app = firebase_admin.initialize_app(credentials.Certificate(str(account)), name="bench-raw")
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{simulator.endpoint}/v1/projects/{PROJECT}/messages:send"
    credential = app.credential.get_credential()
    await asyncio.to_thread(credential.refresh, google.auth.transport.requests.Request())

    async def send(count: int) -> int:
        messages = raw_messages(count)
        sent = 0
        for start in range(0, count, BATCH):
            response = await messaging.send_each_async(messages[start : start + BATCH], app=app)
            sent += response.success_count
        return sent

    async def close() -> None:
        await service._async_client.aclose()
        service._async_client = _Closed()
        await asyncio.to_thread(firebase_admin.delete_app, app)

    return send, close


class _Closed:
    async def aclose(self) -> None:
        return None


async def provider_case(
    simulator: FcmSimulator, folder: Path
) -> tuple[Callable[[int], Awaitable[int]], Callable[[], Awaitable[None]]]:
    provider = FcmProvider(
        AppProfile(id="bench-provider"),
        FcmConfig.model_validate(simulator.fcm_config(folder, PROJECT)),
        send_timeout_seconds=10.0,
    )

    async def send(count: int) -> int:
        reports = await provider.send(push_messages(count))
        return sum(report.outcome is Outcome.SENT for report in reports)

    return send, provider.close


async def measure(runs: int, sends: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"raw": [], "provider": []}
    with tempfile.TemporaryDirectory() as folder:
        async with FcmSimulator() as simulator:
            cases = {
                "raw": await raw_case(simulator, Path(folder)),
                "provider": await provider_case(simulator, Path(folder)),
            }
            try:
                for send, _ in cases.values():
                    await send(50)  # warm-up: token, connections
                for _ in range(runs):
                    for name, (send, _) in cases.items():
                        started = time.perf_counter()
                        sent = await send(sends)
                        elapsed = time.perf_counter() - started
                        if sent != sends:
                            raise RuntimeError(f"{name}: only {sent} of {sends} were sent")
                        rates[name].append(sends / elapsed)
            finally:
                for _, close in cases.values():
                    await close()
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sends", type=int, default=200)
    args = parser.parse_args(argv)

    rates = asyncio.run(measure(args.runs, args.sends))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = medians["provider"] / medians["raw"]
    print(f"FCM, {args.sends} sends per run, median of {args.runs} runs (sends/second)")
    print(f"{'case':<10} {'median':>10} {'min':>10} {'max':>10}")
    for name, values in rates.items():
        print(f"{name:<10} {medians[name]:>10.0f} {min(values):>10.0f} {max(values):>10.0f}")
    print(f"provider / raw = {ratio:.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "providers-fcm",
                "measured_at": datetime.now(UTC).isoformat(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "runs": args.runs,
                "sends_per_run": args.sends,
                "sends_per_second": rates,
                "median_sends_per_second": medians,
                "provider_to_raw_ratio": ratio,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
