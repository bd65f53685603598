"""``pushgate serve --processes N``: N HTTP API processes sharing one port, beside the worker.

One Python process accepts at most one core's worth of requests. With ``--processes N`` the
command becomes a small supervisor that starts N children, each listening on the same
``server.host``/``server.port`` with ``SO_REUSEPORT`` (the kernel spreads new connections over
them). The first child also runs the delivery worker and the scheduler, unless the command was
given ``--api-only``; the others only accept. The supervisor itself serves nothing:

- it refuses an unsafe start before any child exists (the published demo key on a reachable
  host, a schema that needs ``pushgate db upgrade``) and creates an empty database once, so the
  children never race to migrate it;
- it forwards SIGTERM/SIGINT to every child and waits for their graceful shutdown;
- if one child dies, it stops the others and exits 1, so the service manager restarts the whole
  group instead of running silently short of a process (or, worse, without its worker).

Metrics stay whole: the children write their samples to a shared folder (prometheus-client's
multiprocess mode) and ``/metrics``, whichever child answers, adds them up.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.metrics import MULTIPROCESS_DIR_ENV
from gateway.runtime import Role
from gateway.server import StartupError, prepare_to_serve, run, warn_built_in_defaults

log = logging.getLogger(__name__)

# How long the supervisor waits for its children's graceful shutdown before it kills them:
# longer than a worker's own bound on finishing the requests it has in flight.
STOP_SECONDS = 30.0


class SupervisorError(Exception):
    """``--processes`` cannot start as configured; the message says why and what to do."""


def child_roles(role: Role, processes: int) -> list[Role]:
    """The role of each child: the first does what the command was asked to (all, or the API
    only), every other one serves the API only."""
    if processes < 1:
        raise SupervisorError(f"--processes {processes}: give 1 or more")
    if not role.accepts:
        raise SupervisorError(
            "--processes starts API processes; a worker-only process is one process "
            "(on PostgreSQL, start more of them to deliver in parallel)"
        )
    return [role] + [Role.API] * (processes - 1)


def serve_processes(
    settings: Settings, role: Role, processes: int, *, built_in_defaults: bool = False
) -> int:
    """Run ``processes`` children until SIGTERM/SIGINT; returns the exit code."""
    configure_logging(level=settings.logging.level, log_format=settings.logging.format)
    if built_in_defaults:
        warn_built_in_defaults(settings)
    try:
        roles = child_roles(role, processes)
        if settings.server.port == 0:
            raise SupervisorError(
                "--processes needs a fixed server.port: the processes share one port, and "
                "port 0 would give each a different one"
            )
        asyncio.run(prepare_to_serve(settings, role))
    except (SupervisorError, StartupError) as exc:
        log.error("%s", exc)
        return 2

    metrics_dir = tempfile.mkdtemp(prefix="pushgate-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir  # the children inherit it at spawn
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping %d processes", signal.Signals(signum).name, len(roles))
        stopping.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    context = multiprocessing.get_context("spawn")  # no inherited event loop, engine or locks
    children: list[BaseProcess] = []
    code = 0
    try:
        for index, child_role in enumerate(roles):
            child: BaseProcess = context.Process(
                target=run_child, args=(settings, child_role), name=f"pushgate-{index}"
            )
            child.start()
            children.append(child)
            log.info(
                "started process %d of %d (pid %s, role %s)",
                index + 1,
                len(roles),
                child.pid,
                child_role,
            )
        while not stopping.is_set():
            ended = wait([child.sentinel for child in children], timeout=0.5)
            if ended:
                for child in children:
                    if child.sentinel in ended:
                        child.join()  # ended: this only collects its exit code
                        log.error(
                            "process %s (pid %s) exited with code %s; stopping the others so "
                            "the group restarts whole",
                            child.name,
                            child.pid,
                            child.exitcode,
                        )
                code = 1
                break
    finally:
        stop_children(children)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def stop_children(children: list[BaseProcess]) -> None:
    """SIGTERM every child still running, then wait for them (SIGKILL after
    :data:`STOP_SECONDS`)."""
    for child in children:
        if child.exitcode is None:
            child.terminate()
    for child in children:
        child.join(STOP_SECONDS)
        if child.exitcode is None:
            log.warning(
                "process %s (pid %s) did not stop in time; killing it", child.name, child.pid
            )
            child.kill()
            child.join()


def run_child(settings: Settings, role: Role) -> None:
    """A child's whole life: its own logging and event loop, listening with ``SO_REUSEPORT``."""
    raise SystemExit(run(settings, role, reuse_port=True))
