"""Soak: steady load on the whole gateway for a while; does its memory settle, do errors stay
flat?

The real ``pushgate serve`` (API, delivery worker and scheduler in one process, SQLite) delivers
to the simulators in their own process, so the server's RSS is the gateway's alone (the
simulators' request logs are cleared at every sample). Load: ``rate`` transactional
notifications per second, paced, for users with one iOS device each. Every ``sample_seconds``
the server's RSS and the interval's request errors are sampled. RSS growth is measured from the
end of the warm-up (the first ``warmup_fraction`` of the run) to the end.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.ingest import notification_body, register_devices
from bench.stack import (
    RESULTS,
    SimulatorProcess,
    client_session,
    median,
    percentile,
    post_load,
    pushgate_serve,
    rss_mib,
    settings_data,
    sqlite_url,
)


async def measure(
    *,
    seconds: float,
    rate: float,
    folder: Path,
    users: int = 200,
    sample_seconds: float = 10.0,
    warmup_fraction: float = 0.25,
) -> dict[str, Any]:
    samples: list[dict[str, float]] = []
    delivered = 0
    async with SimulatorProcess(max_seconds=seconds + 600) as sims:
        data = settings_data(sqlite_url(folder, "soak.db"), sims.sections)
        async with pushgate_serve(data, log_file=RESULTS / "soak-server.log") as server:
            await register_devices(server.url, users)
            await sims.reset()
            body = notification_body(users)
            intervals = max(1, round(seconds / sample_seconds))
            async with client_session(16) as session:
                for index in range(intervals):
                    load = await post_load(
                        session,
                        server.url + "/v1/notifications",
                        body,
                        concurrency=16,
                        seconds=seconds / intervals,
                        rate=rate,
                    )
                    stats = await sims.reset()
                    delivered += stats["apns_answered"]
                    samples.append(
                        {
                            "at_seconds": round((index + 1) * seconds / intervals, 1),
                            "rss_mib": round(rss_mib(server.pid), 2),
                            "requests": load.requests,
                            "errors": load.errors,
                            "p99_ms": round(percentile(load.latencies, 0.99) * 1000, 1),
                            "delivered": stats["apns_answered"],
                        }
                    )
            await asyncio.sleep(2)  # the worker's last round
            delivered += (await sims.reset())["apns_answered"]
    warm = max(1, round(len(samples) * warmup_fraction))
    after_warmup = samples[warm - 1]["rss_mib"]
    final = median([s["rss_mib"] for s in samples[-2:]])
    errors = [s["errors"] for s in samples]
    accepted = sum(s["requests"] - s["errors"] for s in samples)
    return {
        "seconds": seconds,
        "rate_per_second": rate,
        "requests": sum(s["requests"] for s in samples),
        "errors": sum(errors),
        "errors_flat": max(errors) == 0 or max(errors[warm:], default=0) <= max(errors[:warm]),
        "accepted": accepted,
        "delivered": delivered,
        "rss_after_warmup_mib": after_warmup,
        "rss_final_mib": final,
        "rss_growth": (final - after_warmup) / after_warmup,
        "samples": samples,
    }
