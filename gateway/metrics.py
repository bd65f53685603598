"""Prometheus metrics, one registry per running gateway (so tests can build many apps)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            registry=self.registry,
        )
        self.deferred = Gauge(
            "pushgate_deferred_notifications",
            "Deferred notifications by release hour: overdue, 1-24 (hours ahead), later",
            ["release_hour"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "pushgate_deliveries",
            "Delivery attempts by provider and outcome",
            ["provider", "app", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "pushgate_delivery_retries",
            "Delivery attempts scheduled for retry",
            ["provider", "app"],
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "pushgate_breaker_open",
            "1 while the circuit breaker of a provider and app is open",
            ["provider", "app"],
            registry=self.registry,
        )
        self.tokens_invalidated = Counter(
            "pushgate_tokens_invalidated",
            "Device tokens invalidated from provider feedback, by reason",
            ["app", "platform", "reason"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
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
