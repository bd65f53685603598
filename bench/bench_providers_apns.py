"""Throughput baseline: raw aioapns against the APNs simulator, and ApnsProvider over it.

Run from the repository root::

    .venv/bin/python -m bench.bench_providers_apns            # 5 runs of 600 sends per case
    .venv/bin/python -m bench.bench_providers_apns --runs 9 --sends 2000

Both clients talk to the same in-process :class:`ApnsSimulator` over TLS on loopback, in the same
event loop, with the same number of connections, each sending a burst of notifications at once
(``asyncio.gather``) after a warm-up burst, interleaved run by run so a busy machine slows both
alike. Cases:

- ``raw``: unmodified ``aioapns.APNs.send_notification``, every answer ``200``. This is the
  ceiling the delivery pipeline is measured against.
- ``provider``: :meth:`ApnsProvider.send` with the same messages: payload mapping, per-send
  deadline, classification into reports, and the hardened connection.
- ``provider-errors``: the same with half of the tokens answered ``400 BadDeviceToken``, which
  raw aioapns cannot sustain (it stops acknowledging flow control after ~64 KiB of errors).

Client and simulator share one process and one core, so the absolute figures are a floor, not
what Apple would see; the ratio is the point. The table goes to stdout and the numbers to
``bench/results/providers-apns.json``.
"""

import argparse
import asyncio
import json
import platform
import secrets
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aioapns import APNs, NotificationRequest, PushType
from aioapns.connection import APNsProductionClientProtocol

from gateway.providers.apns import ApnsConfig, ApnsProvider
from gateway.providers.base import AppProfile, PushMessage
from gateway.simulators.apns import ApnsReply, ApnsSimulator
from policies.tiers import Tier
from tokens.reports import Outcome

RESULTS = Path(__file__).resolve().parent / "results" / "providers-apns.json"
TOPIC = "com.example.bench"
CONNECTIONS = 4


def raw_client(simulator: ApnsSimulator) -> APNs:
    """Unmodified aioapns, redirected to the simulator through its protocol class."""
    client = APNs(
        key=simulator.provider_key.private_key_pem,
        key_id=simulator.provider_key.key_id,
        team_id=simulator.provider_key.team_id,
        topic=TOPIC,
        max_connections=CONNECTIONS,
        ssl_context=ssl.create_default_context(cafile=str(simulator.ca_file)),
    )
    client.pool.protocol_class = type(
        "SimulatorProtocol",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": "127.0.0.1", "APNS_PORT": int(simulator.endpoint.rsplit(":", 1)[1])},
    )
    return client


def messages(count: int) -> list[PushMessage]:
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    return [
        PushMessage(
            token=secrets.token_hex(32),
            tier=Tier.TRANSACTIONAL,
            expires_at=expires_at,
            title="Your order shipped",
            body="It arrives Tuesday",
            data={"order_id": f"o-{index}"},
        )
        for index in range(count)
    ]


async def timed(send: Callable[[], Awaitable[int]]) -> tuple[float, int]:
    """Run one burst; return (seconds, successful sends)."""
    started = time.perf_counter()
    ok = await send()
    return time.perf_counter() - started, ok


async def run(runs: int, sends: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"raw": [], "provider": [], "provider-errors": []}
    async with ApnsSimulator() as simulator:
        dead: set[str] = set()
        simulator.script(ApnsReply(400, "BadDeviceToken"), token=lambda token: token in dead)
        raw = raw_client(simulator)
        provider = ApnsProvider(
            AppProfile(id="bench"),
            ApnsConfig.model_validate(simulator.apns_config(TOPIC)),
            send_timeout_seconds=60,
            max_connections=CONNECTIONS,
        )

        async def send_raw() -> int:
            batch = messages(sends)
            results = await asyncio.gather(
                *(
                    raw.send_notification(
                        NotificationRequest(
                            device_token=m.token,
                            message={"aps": {"alert": {"title": m.title, "body": m.body}}},
                            priority=10,
                            push_type=PushType.ALERT,
                            time_to_live=3600,
                        )
                    )
                    for m in batch
                )
            )
            return sum(result.is_successful for result in results)

        async def send_provider() -> int:
            reports = await provider.send(messages(sends))
            return sum(report.outcome is Outcome.SENT for report in reports)

        async def send_provider_errors() -> int:
            batch = messages(sends)
            dead.update(m.token for m in batch[::2])
            reports = await provider.send(batch)
            expected = {Outcome.SENT, Outcome.TOKEN_DEAD}
            return sum(report.outcome in expected for report in reports)

        cases = {
            "raw": send_raw,
            "provider": send_provider,
            "provider-errors": send_provider_errors,
        }
        try:
            for send in cases.values():  # warm-up: connections, JWT, HPACK tables
                await send()
            for _ in range(runs):
                for name, send in cases.items():
                    seconds, ok = await timed(send)
                    if ok != sends:
                        raise RuntimeError(f"{name}: only {ok} of {sends} sends succeeded")
                    samples[name].append(sends / seconds)
        finally:
            raw.pool.close()
            await provider.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sends", type=int, default=600)
    args = parser.parse_args()

    samples = asyncio.run(run(args.runs, args.sends))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {name: medians[name] / medians["raw"] for name in medians}

    print(
        f"pushgate APNs benchmark: median of {args.runs} interleaved runs, "
        f"{args.sends} concurrent sends each, {CONNECTIONS} connections, loopback TLS"
    )
    print(f"{'case':<16} {'sends/s':>10} {'x raw':>7}")
    for name, median in medians.items():
        print(f"{name:<16} {median:>10.0f} {ratios[name]:>7.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "runs": args.runs,
                "sends_per_run": args.sends,
                "connections": CONNECTIONS,
                "median_sends_per_second": medians,
                "samples_sends_per_second": samples,
                "ratio_to_raw": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
