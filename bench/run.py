"""pushgate benchmarks: every figure against the ceiling of its own parts, in one command.

Run from the repository root::

    .venv/bin/python -m bench.run                     # about 5 minutes on 2 cores
    .venv/bin/python -m bench.run --full              # the issue's sizes: 200,000-notification
                                                      # wave per database, 100,000 scheduled
                                                      # across 20 zones, 10-minute soak
    .venv/bin/python -m bench.run --only ingest,policy

Writes ``bench/results/report.json`` (every sample) and ``bench/results/report.md`` (the table).
Each figure is the median of several runs, and each ratio is taken against a ceiling measured in
the same run, interleaved, so a busy machine slows both alike:

- end to end: ``POST /v1/notifications`` until the APNs request arrives, through ``pushgate
  serve`` (SQLite, PostgreSQL; one process and ``--processes 2``) vs raw aioapns sending as many
  at the same concurrency (:mod:`bench.end_to_end`);
- ingest: ``POST /v1/notifications`` on ``pushgate serve --api-only`` (SQLite, PostgreSQL) vs a
  bare aiohttp endpoint parsing the same JSON, and vs one that also stores it durably
  (:mod:`bench.ingest`);
- delivery: queued → delivered at the simulator through the worker vs the raw client
  (:mod:`bench.delivery`);
- release wave: deferred notifications due as one zone's quiet hours end (:mod:`bench.wave`);
- scheduled waves: notifications for the same local 09:00 in 20 zones, released as each zone
  reaches it, with the drain rate of each zone's wave and a check that none went early
  (:mod:`bench.schedule_wave`);
- policy: one decision vs a bare ``astimezone`` (:mod:`bench.bench_policy`);
- soak: steady load on the whole gateway, RSS and errors over time (:mod:`bench.soak`).

PostgreSQL figures need the server at ``PUSHGATE_BENCH_POSTGRES_URL`` (default the local
trust-auth ``postgres@127.0.0.1:5432/test``); without it they are left out, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bench_policy, delivery, end_to_end, ingest, soak
from bench.stack import PYTHON, RESULTS, ROOT, postgres_available

SECTIONS = ("end-to-end", "ingest", "delivery", "wave", "schedule", "policy", "soak")
GOALS = {
    "end-to-end": 0.8,
    "ingest": 0.5,
    "delivery": 0.8,
    "policy": bench_policy.GOAL_RATIO,
    "soak": 0.10,
    "wave": 0.8,
}
WAVE_RSS_GOAL_MIB = 256


def measure_policy(runs: int) -> dict[str, Any]:
    bench_policy._check_cases()
    samples = bench_policy._measure(runs, 0.2)
    return {
        "runs": runs,
        "median_ns": {name: statistics.median(values) for name, values in samples.items()},
        "ratio_to_floor": {
            name: statistics.median(v / f for v, f in zip(values, samples["floor"], strict=True))
            for name, values in samples.items()
        },
    }


def measure_wave(count: int, database: str, folder: Path, runs: int) -> dict[str, Any]:
    """``runs`` waves, each in a process of its own so that its peak RSS is the wave's alone:
    the median drain, the worst peak RSS and in-flight count, and whether every run held."""
    samples: list[dict[str, Any]] = []
    for run in range(runs):
        out = folder / f"wave-{database}-{run}.json"
        subprocess_args = [PYTHON, "-m", "bench.wave", "--count", str(count)]
        subprocess_args += ["--database", database, "--folder", str(folder), "--out", str(out)]
        subprocess.run(subprocess_args, cwd=ROOT, check=True, timeout=4 * 3600)
        samples.append(json.loads(out.read_text()))
    first = samples[0]
    return {
        "count": count,
        "database": database,
        "runs": runs,
        "spread_minutes": first["spread_minutes"],
        "concurrency_limit": first["concurrency_limit"],
        "provider_latency_ms": first["provider_latency_ms"],
        "drain_seconds": statistics.median(s["drain_seconds"] for s in samples),
        "delivered_per_second": statistics.median(s["delivered_per_second"] for s in samples),
        "concurrency_bound_per_second": first["concurrency_bound_per_second"],
        "ratio_to_concurrency_bound": statistics.median(
            s["ratio_to_concurrency_bound"] for s in samples
        ),
        "raw_aioapns_per_second": statistics.median(s["raw_aioapns_per_second"] for s in samples),
        "ratio_to_raw_aioapns": statistics.median(s["ratio_to_raw_aioapns"] for s in samples),
        "ratio_range": (
            min(s["ratio_to_concurrency_bound"] for s in samples),
            max(s["ratio_to_concurrency_bound"] for s in samples),
        ),
        "peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
        "peak_in_flight_at_simulator": max(s["peak_in_flight_at_simulator"] for s in samples),
        "spread_held": all(s["spread_held"] for s in samples),
        "concurrency_held": all(s["concurrency_held"] for s in samples),
        "all_sent": all(s["statuses"] == {"sent": count} for s in samples),
        "samples": samples,
    }


def measure_schedule(count: int, database: str, folder: Path) -> dict[str, Any]:
    """One run of the scheduled waves, in a process of its own (see :mod:`bench.schedule_wave`):
    its 20 zone waves are the samples."""
    out = folder / f"schedule-{database}.json"
    subprocess_args = [PYTHON, "-m", "bench.schedule_wave", "--count", str(count)]
    subprocess_args += ["--database", database, "--folder", str(folder), "--out", str(out)]
    subprocess.run(subprocess_args, cwd=ROOT, check=True, timeout=4 * 3600)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def schedule_waves_table(runs: list[dict[str, Any]]) -> list[str]:
    """Each zone wave's drain, one column per database."""
    if not runs:
        return []
    header = "| zone wave (local 09:00) | notifications | "
    header += " | ".join(f"{run['database']}: drained in, rate" for run in runs) + " |"
    lines = ["", f"Scheduled waves, {runs[0]['count']:,} notifications for 09:00 local:", ""]
    lines += [header, "|---|---|" + "---|" * len(runs)]
    for index, wave in enumerate(runs[0]["waves"]):
        cells = [
            f"{', '.join(wave['zones'])} ({wave['local_0900_utc'][11:16]} UTC)",
            f"{wave['expected']:,}",
        ]
        for run in runs:
            other = run["waves"][index]
            cells.append(f"{other['seconds']:.2f} s, {other['per_second']:.0f}/s")
        lines.append(f"| {' | '.join(cells)} |")
    return lines


def findings(report: dict[str, Any]) -> list[str]:
    """What bounds a missed goal, read off this run's own figures."""
    notes = []
    if "ingest" in report:
        targets = report["ingest"]["targets"]
        ceiling = targets["ceiling"]["server_cpu_ms_per_request"]
        for name in ("sqlite", "postgresql"):
            if name in targets and targets[name]["ratio_to_ceiling"] < GOALS["ingest"]:
                cpu = targets[name]["server_cpu_ms_per_request"]
                durable = targets.get(f"durable-{name}")
                stored = (
                    f" The durable ceiling (aiohttp plus the raw driver storing each request "
                    f"with group commit, no gateway logic) reaches "
                    f"{durable['requests_per_second']:.0f} req/s at "
                    f"{durable['server_cpu_ms_per_request']:.2f} ms/req, "
                    f"{durable['ratio_to_ceiling']:.2f} of the bare endpoint; pushgate is at "
                    f"{targets[name]['ratio_to_durable_ceiling']:.2f} of it."
                    if durable
                    else ""
                )
                notes.append(
                    f"Ingest on {name} is CPU-bound in the server: {cpu:.2f} ms of CPU per "
                    f"request against {ceiling:.2f} ms for the bare endpoint "
                    f"({cpu / max(ceiling, 1e-9):.0f}x).{stored} A 0.5 ratio to the bare "
                    f"endpoint needs at most {2 * ceiling:.2f} ms of CPU per request for "
                    "auth, validation, policy, storage and the answer together."
                )
    for database, providers in report.get("delivery", {}).get("databases", {}).items():
        apns = providers.get("apns")
        if apns and apns["ratio_to_raw"] < GOALS["delivery"]:
            notes.append(
                f"APNs on {database}: {apns['pipeline_cpu_ms_per_delivery']:.2f} ms of CPU per "
                f"delivery in the worker's process against {apns['raw_cpu_ms_per_send']:.2f} ms "
                f"per raw send. The whole machine had {apns['raw_machine_cores_busy']:.2f} of "
                f"{os.cpu_count()} cores busy during raw runs (client and simulator) and "
                f"{apns['pipeline_machine_cores_busy']:.2f} during pipeline runs (worker, "
                "simulator and the database server): the raw client saturates the machine, the "
                "pipeline additionally waits on its database round trips."
            )
        fcm = providers.get("fcm")
        if fcm and fcm["ratio_to_raw"] > 1:
            notes.append(
                f"FCM on {database}: the pipeline beats raw send_each_async; firebase-admin's "
                "own async client (unbounded concurrency over one httpx pool) is slower than "
                "FcmProvider's bounded one, so the raw figure is not a ceiling."
            )
    return notes


def _ratio(value: float) -> str:
    return f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    if "end-to-end" in report:
        e2e = report["end-to-end"]
        for database, figures in e2e["databases"].items():
            ok = figures["ratio_to_raw"] >= GOALS["end-to-end"]
            rows.append(
                (
                    f"End to end, POST → APNs request, {database} "
                    f"({e2e['count']:,} at c={e2e['concurrency']})",
                    f"{figures['gateway_per_second']:.0f}/s; POST p50 "
                    f"{figures['post_p50_ms']:.0f} ms, p99 {figures['post_p99_ms']:.0f} ms",
                    f"{figures['raw_per_second']:.0f} sends/s (raw aioapns, same concurrency)",
                    _ratio(figures["ratio_to_raw"]),
                    f"≥ 0.80 {'met' if ok else 'MISSED'}",
                )
            )
        for database, figures in e2e.get("two_processes", {}).items():
            one = e2e["databases"][database]["gateway_per_second"]
            rows.append(
                (
                    f"End to end with `--processes 2`, {database}",
                    f"{figures['gateway_per_second']:.0f}/s "
                    f"({figures['gateway_per_second'] / one:.2f} times one process); POST p50 "
                    f"{figures['post_p50_ms']:.0f} ms, p99 {figures['post_p99_ms']:.0f} ms",
                    f"{figures['raw_per_second']:.0f} sends/s (raw aioapns)",
                    _ratio(figures["ratio_to_raw"]),
                    "evidence",
                )
            )
    if "ingest" in report:
        targets = report["ingest"]["targets"]
        ceiling = targets["ceiling"]
        for name in ("sqlite", "postgresql"):
            if name not in targets:
                continue
            target = targets[name]
            ok = target["ratio_to_ceiling"] >= GOALS["ingest"]
            rows.append(
                (
                    f"Ingest, {name} (c={report['ingest']['concurrency']})",
                    f"{target['requests_per_second']:.0f} req/s, p50 {target['p50_ms']:.0f} ms, "
                    f"p99 {target['p99_ms']:.0f} ms; server CPU "
                    f"{target['server_cpu_ms_per_request']:.1f} ms/req",
                    f"{ceiling['requests_per_second']:.0f} req/s, p50 {ceiling['p50_ms']:.0f} ms, "
                    f"p99 {ceiling['p99_ms']:.0f} ms; server CPU "
                    f"{ceiling['server_cpu_ms_per_request']:.2f} ms/req (bare aiohttp)",
                    _ratio(target["ratio_to_ceiling"]),
                    f"≥ 0.50 {'met' if ok else 'MISSED'}",
                )
            )
            durable = targets.get(f"durable-{name}")
            if durable:
                rows.append(
                    (
                        f"Ingest, {name}, against the durable ceiling",
                        f"{target['requests_per_second']:.0f} req/s",
                        f"{durable['requests_per_second']:.0f} req/s, p50 "
                        f"{durable['p50_ms']:.0f} ms; server CPU "
                        f"{durable['server_cpu_ms_per_request']:.2f} ms/req (aiohttp + raw "
                        "driver, group commit)",
                        _ratio(target["ratio_to_durable_ceiling"]),
                        "evidence",
                    )
                )
    if "delivery" in report:
        for database, providers in report["delivery"]["databases"].items():
            for name, figures in providers.items():
                raw = "raw aioapns" if name == "apns" else "raw send_each_async"
                ok = figures["ratio_to_raw"] >= GOALS["delivery"]
                rows.append(
                    (
                        f"Delivery {name.upper()}, {database}",
                        f"{figures['pipeline_per_second']:.0f} delivered/s",
                        f"{figures['raw_per_second']:.0f} sends/s ({raw})",
                        _ratio(figures["ratio_to_raw"]),
                        f"≥ 0.80 {'met' if ok else 'MISSED'}",
                    )
                )
    for wave in report.get("waves", []):
        bound_ok = wave["ratio_to_concurrency_bound"] >= GOALS["wave"]
        held = wave["spread_held"] and wave["concurrency_held"] and wave["all_sent"]
        rss_ok = wave["peak_rss_mib"] <= WAVE_RSS_GOAL_MIB
        low, high = wave["ratio_range"]
        rows.append(
            (
                f"Release wave, {wave['count']:,} deferred, {wave['database']} "
                f"({wave['runs']} run{'s' if wave['runs'] != 1 else ''})",
                f"{wave['delivered_per_second']:.0f} delivered/s (drained in "
                f"{wave['drain_seconds']:.1f} s), peak RSS {wave['peak_rss_mib']:.0f} MiB; "
                f"spread over {wave['spread_minutes']} min "
                f"{'held' if wave['spread_held'] else 'NOT held'}; in flight peaked at "
                f"{wave['peak_in_flight_at_simulator']} of {wave['concurrency_limit']}"
                f"{'' if wave['all_sent'] else '; NOT all sent'}",
                f"{wave['concurrency_bound_per_second']:.0f}/s bound ({wave['concurrency_limit']}"
                f" in flight / {wave['provider_latency_ms']} ms); raw aioapns "
                f"{wave['raw_aioapns_per_second']:.0f} sends/s at the same latency",
                f"{_ratio(wave['ratio_to_concurrency_bound'])}"
                f"{f' ({low:.2f}-{high:.2f})' if wave['runs'] > 1 else ''} of the bound; "
                f"{_ratio(wave['ratio_to_raw_aioapns'])} of raw",
                f"≥ 0.80 of the bound {'met' if bound_ok else 'MISSED'}; spread and limit "
                f"{'held' if held else 'NOT held'}; RSS ≤ {WAVE_RSS_GOAL_MIB} MiB "
                f"{'met' if rss_ok else 'MISSED'}",
            )
        )
    for run in report.get("schedule", []):
        held = run["none_before_local_0900"] and run["each_wave_released_exactly_its_zones"]
        rows.append(
            (
                f"Scheduled 09:00 local, {run['count']:,} in {run['zones']} zones, "
                f"{run['database']} ({run['wave_count']} waves)",
                f"zone waves drained at {run['median_wave_per_second']:.0f}/s median "
                f"({run['slowest_wave_per_second']:.0f}-{run['fastest_wave_per_second']:.0f}/s), "
                f"peak RSS {run['peak_rss_mib']:.0f} MiB"
                f"{'' if run['all_sent'] else '; NOT all sent'}",
                f"{run['released_early']} released a second early, "
                f"{run['sent_before_their_instant']} sent before their instant",
                "",
                f"none before local 09:00: {'held' if held else 'NOT held'}",
            )
        )
    if "policy" in report:
        policy = report["policy"]
        for case in ("send", "defer"):
            ratio = policy["ratio_to_floor"][case]
            rows.append(
                (
                    f"Policy decision, {case}",
                    f"{policy['median_ns'][case] / 1000:.1f} µs",
                    f"{policy['median_ns']['floor'] / 1000:.1f} µs (bare astimezone)",
                    _ratio(ratio),
                    f"≤ 5 {'met' if ratio <= GOALS['policy'] else 'MISSED'}",
                )
            )
    if "soak" in report:
        result = report["soak"]
        growth = result["rss_growth"]
        rows.append(
            (
                f"Soak, {result['seconds'] / 60:.1f} min at {result['rate_per_second']:.0f} req/s",
                f"RSS {result['rss_after_warmup_mib']:.0f} → {result['rss_final_mib']:.0f} MiB "
                f"({growth:+.1%}), {result['errors']} errors, "
                f"{result['delivered']:,} of {result['accepted']:,} delivered",
                "RSS after warm-up",
                "",
                f"growth < 10% {'met' if growth < GOALS['soak'] else 'MISSED'}, errors "
                f"{'flat' if result['errors_flat'] else 'GROWING'}",
            )
        )
    lines = [
        f"Measured {report['measured_at']} on {report['machine']} "
        f"({report['cpus']} CPUs, Python {report['python']}) with `{report['command']}` "
        f"in {report['elapsed_seconds'] / 60:.1f} min.",
        "",
        "| measure | pushgate | ceiling (same run) | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines += schedule_waves_table(report.get("schedule", []))
    lines += ["", *[f"- {note}" for note in report.get("notes", [])]]
    return "\n".join(lines) + "\n"


async def measure_async(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if "end-to-end" in args.only:
        print("end to end ...", flush=True)
        report["end-to-end"] = await end_to_end.measure(
            runs=args.runs, count=args.e2e_count, concurrency=200, folder=folder
        )
    if "ingest" in args.only:
        print("ingest ...", flush=True)
        report["ingest"] = await ingest.measure(
            runs=args.runs, seconds=3.0, concurrency=32, users=200, folder=folder
        )
    if "delivery" in args.only:
        print("delivery ...", flush=True)
        report["delivery"] = await delivery.measure(
            runs=args.runs, count=args.delivery_count, folder=folder
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="the issue's sizes (slow)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure")
    parser.add_argument("--wave-count", type=int, help="deferred notifications in the wave")
    parser.add_argument(
        "--schedule-count", type=int, help="notifications scheduled for 09:00 across the zones"
    )
    parser.add_argument("--soak-minutes", type=float, help="length of the soak")
    parser.add_argument("--soak-rate", type=float, default=20.0, help="soak requests per second")
    parser.add_argument("--delivery-count", type=int, default=2000, help="sends per delivery run")
    parser.add_argument(
        "--e2e-count", type=int, default=5000, help="notifications per end-to-end run"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args(argv)
    args.only = set(args.only.split(","))
    unknown = args.only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    wave_count = args.wave_count or (200_000 if args.full else 5_000)
    schedule_count = args.schedule_count or (100_000 if args.full else 2_000)
    soak_minutes = args.soak_minutes or (10.0 if args.full else 1.5)

    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "python": sys.version.split()[0],
        "machine": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "notes": [],
    }
    with tempfile.TemporaryDirectory(prefix="pushgate-bench-") as name:
        folder = Path(name)
        report |= asyncio.run(measure_async(args, folder))
        if "wave" in args.only:
            # at the full size one run per database (about 7 minutes each) is what fits
            wave_runs = 1 if args.full else args.runs
            databases = ["sqlite"] + (["postgresql"] if asyncio.run(postgres_available()) else [])
            report["waves"] = []
            for database in databases:
                print(f"release wave of {wave_count:,} on {database} ...", flush=True)
                report["waves"].append(measure_wave(wave_count, database, folder, wave_runs))
        if "schedule" in args.only:
            databases = ["sqlite"] + (["postgresql"] if asyncio.run(postgres_available()) else [])
            report["schedule"] = []
            for database in databases:
                print(f"{schedule_count:,} scheduled for 09:00 on {database} ...", flush=True)
                report["schedule"].append(measure_schedule(schedule_count, database, folder))
        if "policy" in args.only:
            print("policy ...", flush=True)
            report["policy"] = measure_policy(7)
        if "soak" in args.only:
            print(f"soak for {soak_minutes} min ...", flush=True)
            report["soak"] = asyncio.run(
                soak.measure(seconds=soak_minutes * 60, rate=args.soak_rate, folder=folder)
            )
    report["elapsed_seconds"] = time.monotonic() - started
    report["notes"] += findings(report)
    if "ingest" in report and "postgresql" not in report["ingest"]["targets"]:
        report["notes"].append("PostgreSQL was not reachable: no PostgreSQL figures.")
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    table = markdown(report)
    (RESULTS / "report.md").write_text("# pushgate benchmarks\n\n" + table)
    print(table)
    print(f"wrote {RESULTS / 'report.json'} and {RESULTS / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
