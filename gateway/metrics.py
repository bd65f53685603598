"""Prometheus metrics, one registry per running gateway (so tests can build many apps).

Delivery is counted where it happens: the delivery side's families (deliveries, retries,
provider answers, latency, in flight, breakers, tokens, queue and deferred gauges) are exposed
only by a process that delivers. An API-only process builds them unregistered, so its
``/metrics`` shows no delivery figure at all rather than zeros that look like news.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Set (by ``pushgate serve --processes N``) before the children start: each writes its samples
# to files in this folder, and /metrics adds up every process's (prometheus-client reads the
# variable when it is first imported).
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Seconds from a request handed to a provider to its answer: APNs and FCM answer in tens of
# milliseconds; the tail runs to delivery.send_timeout_seconds (10 s by default).
SEND_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def reason_label(reason: str | None) -> str:
    """A provider's reason as a label value: its code, without the detail some reasons carry
    after a colon (``configuration_error: <file error>``), so the label set stays small."""
    return (reason or "").split(":", 1)[0].strip()[:64]


class Metrics:
    def __init__(self, *, delivers: bool = True) -> None:
        self.registry = CollectorRegistry()
        delivery = self.registry if delivers else None
        self.http_requests = Counter(
            "pushgate_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pushgate_http_request_duration_seconds",
            "HTTP request latency by route and method",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.notifications_accepted = Counter(
            "pushgate_notifications_accepted",
            "Notifications accepted, by tier and the status the policy gave them",
            ["tier", "status", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pushgate_queue_depth",
            "Pending deliveries waiting for a worker",
            registry=delivery,
            multiprocess_mode="livemax",
        )
        self.deferred = Gauge(
            "pushgate_deferred_notifications",
            "Deferred notifications by release hour: overdue, 1-24 (hours ahead), later",
            ["release_hour"],
            registry=delivery,
            multiprocess_mode="livemax",
        )
        self.deliveries = Counter(
            "pushgate_deliveries",
            "Delivery attempts by provider and outcome",
            ["provider", "app", "outcome"],
            registry=delivery,
        )
        self.retries = Counter(
            "pushgate_delivery_retries",
            "Delivery attempts scheduled for retry",
            ["provider", "app"],
            registry=delivery,
        )
        self.breaker_open = Gauge(
            "pushgate_breaker_open",
            "1 while the circuit breaker of a provider and app is open",
            ["provider", "app"],
            registry=delivery,
            multiprocess_mode="livemax",
        )
        self.tokens_invalidated = Counter(
            "pushgate_tokens_invalidated",
            "Device tokens invalidated from provider feedback, by reason",
            ["app", "platform", "reason"],
            registry=delivery,
        )

        self.provider_send_seconds = Histogram(
            "pushgate_provider_send_duration_seconds",
            "Seconds from a request handed to the provider to its answer (or transport error)",
            ["provider", "app"],
            registry=delivery,
            buckets=SEND_SECONDS_BUCKETS,
        )
        self.provider_in_flight = Gauge(
            "pushgate_provider_requests_in_flight",
            "Requests sent to the provider and not yet answered",
            ["provider", "app"],
            registry=delivery,
            multiprocess_mode="livesum",
        )
        self.provider_responses = Counter(
            "pushgate_provider_responses",
            "Provider answers by HTTP status (none: no answer) and reason (empty: accepted)",
            ["provider", "app", "status", "reason"],
            registry=delivery,
        )

        self.permission_events = Counter(
            "pushgate_permission_events",
            "Permission events stored, by app, platform, event and result (empty when none); "
            "a repeated event_id is not counted again",
            ["app", "platform", "event", "result"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        folder = os.environ.get(MULTIPROCESS_DIR_ENV)
        if folder:  # one of several processes: answer for all of them
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def middleware(self) -> Middleware:
        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            response = await handler(request)
            resource = request.match_info.route.resource
            # the route template, not the path, so user ids do not explode the label set
            route = resource.canonical if resource is not None else "unmatched"
            self.http_requests.labels(route, request.method, str(response.status)).inc()
            self.http_latency.labels(route, request.method).observe(time.perf_counter() - started)
            return response

        return observe
