"""One place that assembles a running gateway from its settings: :func:`build_runtime`.

``pushgate serve``, the CLI, the tests and the benchmarks all build the same object graph here,
so nothing is wired twice:

    settings ─► engine, sessions ─► ServiceContext ─► Services (intake, notifications, ...)
                                                  └─► DeliveryQueue ─► DeliveryWorker ─► GatewayJobs
                                     ProviderSet (one provider per app and platform) ──┘

What runs in the background (the worker loop, the scheduler, the HTTP server) is started by
whoever serves; :func:`build_runtime` only builds, and closes what it built when its context
ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import Settings
from gateway.db import create_engine, session_factory
from gateway.delivery.providers import ProviderSet
from gateway.delivery.queue import DeliveryQueue
from gateway.delivery.wakeups import WakeupAnnouncer, WakeupListener, channel_name
from gateway.delivery.worker import DeliveryWorker, ProviderLookup, worker_identity
from gateway.metrics import Metrics
from gateway.sandbox import start_sandbox
from gateway.scheduler import GatewayJobs
from gateway.services import Services
from gateway.services.console import ConsoleService
from gateway.services.context import (
    Clock,
    Dispatch,
    ServiceContext,
    no_dispatch,
    system_clock,
)
from gateway.services.devices import DeviceService
from gateway.services.intake import Intake
from gateway.services.maintenance import MaintenanceService
from gateway.services.notifications import NotificationService
from gateway.services.permission import PermissionService
from gateway.services.preferences import PreferenceService
from gateway.services.users import UserService
from tokens.feedback import InvalidationGuard


class Role(StrEnum):
    """What a process does."""

    ALL = "all"  # HTTP API and delivery
    API = "api"  # HTTP API only; another process delivers
    WORKER = "worker"  # delivery and the scheduler only
    OPERATOR = "operator"  # the command line: services only, nothing in the background

    @property
    def accepts(self) -> bool:
        """Takes notifications over HTTP (and so runs the intake's writer)."""
        return self in (Role.ALL, Role.API)

    @property
    def delivers(self) -> bool:
        """Runs the delivery worker and the scheduler's jobs."""
        return self in (Role.ALL, Role.WORKER)

    @property
    def listens(self) -> bool:
        """Serves HTTP: the API, or (worker only) its health checks and metrics."""
        return self is not Role.OPERATOR


@dataclass(frozen=True)
class Readiness:
    """What ``/readyz`` answers: the state of each part this process needs (``database``, and
    in a process that delivers ``delivery_worker`` and ``scheduler``), and why it cannot take
    work, or None when it can."""

    parts: dict[str, str]
    reason: str | None = None


@dataclass(frozen=True)
class Runtime:
    """A built gateway: its services, and its delivery side when the role delivers."""

    settings: Settings
    role: Role
    context: ServiceContext
    services: Services
    providers: ProviderLookup | None = None
    worker: DeliveryWorker | None = None
    jobs: GatewayJobs | None = None
    wakeups: WakeupListener | None = None
    """On PostgreSQL, where this process delivers: hears work queued by other processes."""

    @property
    def engine(self) -> AsyncEngine:
        return self.context.engine

    @property
    def metrics(self) -> Metrics:
        return self.context.metrics

    async def readiness(self) -> Readiness:
        """Whether this process can do its work now: the database answers and can write,
        and, where this process delivers, its delivery worker and scheduler are running."""
        reasons: list[str] = []
        database = await self.services.unready_reason()
        parts = {"database": "reachable" if database is None else "unreachable"}
        if database is not None:
            reasons.append(database)
        if self.worker is not None:
            parts["delivery_worker"] = "running" if self.worker.is_running else "stopped"
            if not self.worker.is_running:
                reasons.append("the delivery worker is not running")
        if self.jobs is not None:
            parts["scheduler"] = "running" if self.jobs.is_running else "stopped"
            if not self.jobs.is_running:
                reasons.append("the scheduler is not running")
        return Readiness(parts, "; ".join(reasons) or None)


@asynccontextmanager
async def build_runtime(
    settings: Settings,
    *,
    role: Role = Role.ALL,
    engine: AsyncEngine | None = None,
    clock: Clock = system_clock,
    metrics: Metrics | None = None,
    providers: ProviderLookup | None = None,
    worker_owner: str | None = None,
) -> AsyncIterator[Runtime]:
    """Build the gateway for ``role``; everything built is closed when the context ends.

    Without ``engine`` one is made from ``settings.database`` (and disposed of); without
    ``providers`` a :class:`ProviderSet` is built from the apps (in sandbox mode, pointed at
    simulators started here). ``clock`` is every component's notion of now.
    """
    async with AsyncExitStack() as stack:
        if role.delivers:
            settings = await stack.enter_async_context(start_sandbox(settings))
        if engine is None:
            engine = create_engine(settings.database)
            stack.push_async_callback(engine.dispose)
        sessions = session_factory(engine)
        metrics = metrics or Metrics(delivers=role.delivers)
        policy = settings.policy_settings()
        skip_locked = not settings.database.is_sqlite

        worker: DeliveryWorker | None = None
        if role.delivers:
            if providers is None:
                provider_set = ProviderSet.from_settings(settings)
                stack.push_async_callback(provider_set.close)
                providers = provider_set
            queue = DeliveryQueue(
                sessions,
                owner=worker_owner or worker_identity(),
                skip_locked=skip_locked,
                lease_seconds=settings.delivery.lease_seconds,
                guard=InvalidationGuard(
                    window_seconds=settings.tokens.mass_invalidation_window_seconds,
                    min_sends=settings.tokens.mass_invalidation_min_sends,
                    ratio=settings.tokens.mass_invalidation_ratio,
                ),
            )
            worker = DeliveryWorker(
                queue, providers, settings.delivery, clock=clock, metrics=metrics
            )
            stack.push_async_callback(worker.recorder.close)

        # Queued work reaches a worker in this process directly, one in another process through
        # the database (PostgreSQL), or at the worker's next poll (SQLite, one process).
        dispatch: Dispatch = no_dispatch
        wakeups: WakeupListener | None = None
        if worker is not None:
            dispatch = worker.wake
            if skip_locked:
                channel = channel_name(settings.database.url)
                wakeups = WakeupListener(engine, channel, worker.wake)
        elif skip_locked and role.accepts:
            announcer = WakeupAnnouncer(engine, channel_name(settings.database.url))
            stack.push_async_callback(announcer.close)
            dispatch = announcer
        context = ServiceContext(
            settings=settings,
            engine=engine,
            sessions=sessions,
            policy=policy,
            clock=clock,
            metrics=metrics,
            dispatch=dispatch,
        )
        intake = Intake(
            sessions,
            policy=policy,
            clock=clock,
            retention=timedelta(hours=settings.retention.idempotency_hours),
        )
        if role.accepts:
            intake.start()
            stack.push_async_callback(intake.close)
        maintenance = MaintenanceService(context)
        services = Services(
            context=context,
            notifications=NotificationService(context, intake),
            devices=DeviceService(context),
            preferences=PreferenceService(context),
            users=UserService(context),
            maintenance=maintenance,
            permission=PermissionService(context),
            console=ConsoleService(context),
        )
        jobs = (
            GatewayJobs(context, worker, maintenance, skip_locked=skip_locked)
            if worker is not None
            else None
        )
        yield Runtime(
            settings=settings,
            role=role,
            context=context,
            services=services,
            providers=providers,
            worker=worker,
            jobs=jobs,
            wakeups=wakeups,
        )
