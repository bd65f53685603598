"""Delivery to Apple Push Notification service: the provider class, its configuration and the
table that classifies every APNs answer.

Requests are built by :mod:`.payload` and carried by :mod:`.transport` (aioapns 4.0 with its
defects guarded); this module decides what each answer means for the delivery and the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import h2.exceptions
from aioapns.connection import AuthorizationHeaderProvider
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.providers.apns.payload import (
    APNS_MAX_PAYLOAD_BYTES,
    ApnsRequest,
    build_apns_request,
    check_apns_payload,
)
from gateway.providers.apns.transport import (
    ApnsConnectionPool,
    ApnsResponse,
    HardenedConnection,
    MalformedResponseError,
    ProviderTokenHeader,
    StreamResetError,
)
from gateway.providers.base import (
    AppProfile,
    PushMessage,
    PushProvider,
    retry_after_seconds,
)
from gateway.simulators.apns import ApnsSimulator
from tokens.models import Environment, Platform
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)

APNS_HOSTS: Mapping[str, str] = {
    "production": "api.push.apple.com",
    "sandbox": "api.development.push.apple.com",
}
APNS_PORT = 443
# A device token is 32 bytes today; Apple has said it may grow, so allow up to 100 bytes.
_APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")


class ApnsConfig(BaseModel):
    """``[apps.apns]``: token auth (team_id, key_id, key_file) or certificate auth (cert_file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str = Field(min_length=1)
    team_id: str | None = None
    key_id: str | None = None
    key_file: Path | None = None
    cert_file: Path | None = None  # certificate auth: a PEM holding certificate and private key
    environment: Literal["production", "sandbox"] = "production"
    endpoint: str | None = None  # "https://host:port", overrides Apple's hosts (simulators, tests)
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_auth_mode(self) -> ApnsConfig:
        token_auth = (self.team_id, self.key_id, self.key_file)
        if self.cert_file is None and not all(token_auth):
            raise ValueError(
                "set team_id, key_id and key_file for token auth, or cert_file for certificate auth"
            )
        if self.cert_file is not None and any(token_auth):
            raise ValueError("choose one auth mode: token (team_id/key_id/key_file) or cert_file")
        return self


class ApnsProvider(PushProvider):
    """Sends one app's notifications to APNs.

    Connections are made inside the running event loop on the first send, one pool per APNs
    environment (a device's ``environment`` picks production or sandbox). Every send has its own
    deadline (``send_timeout_seconds``); a send that misses it is reported ``RETRY``/``timeout``
    and its stream is reset without disturbing the others on the connection.
    """

    name = "apns"
    platform = Platform.IOS
    config_model = ApnsConfig

    # (status, reason) -> outcome. A reason of None is the row for any other reason with that
    # status; statuses not listed are RETRY when 5xx and FAILED otherwise.
    # https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
    OUTCOMES: ClassVar[Mapping[tuple[int, str | None], Outcome]] = {
        (200, None): Outcome.SENT,
        # The token will never work again. For Unregistered the registry also checks that the
        # token was not registered again after the response's timestamp.
        (410, "Unregistered"): Outcome.TOKEN_DEAD,
        (410, "ExpiredToken"): Outcome.TOKEN_DEAD,
        (400, "BadDeviceToken"): Outcome.TOKEN_DEAD,
        (400, "DeviceTokenNotForTopic"): Outcome.TOKEN_DEAD,
        # Apple is throttling or unwell: try again later, honouring Retry-After.
        (429, None): Outcome.RETRY,
        (500, None): Outcome.RETRY,
        (503, None): Outcome.RETRY,
        # Our fault, not the token's: provider auth, payload size, any other malformed request.
        (400, None): Outcome.FAILED,
        (403, None): Outcome.FAILED,
        (404, None): Outcome.FAILED,
        (405, None): Outcome.FAILED,
        (410, None): Outcome.FAILED,  # a 410 without a reason we know says nothing certain
        (413, None): Outcome.FAILED,
    }
    # Dead-token answers that, arriving for many tokens at once, mean our configuration is
    # wrong (a sandbox token sent to production, another app's topic) rather than that the
    # phones are gone: the registry's mass-invalidation guard counts them.
    MISCONFIGURATION_REASONS: ClassVar[frozenset[str]] = frozenset(
        {"BadDeviceToken", "DeviceTokenNotForTopic"}
    )
    # Only Unregistered carries the instant Apple learnt the token was dead.
    TIMESTAMPED_REASONS: ClassVar[frozenset[str]] = frozenset({"Unregistered"})
    # Transport failures, all transient: connection errors and timeouts are retried.
    TRANSPORT_ERRORS: ClassVar[tuple[tuple[type[BaseException], str], ...]] = (
        (TimeoutError, "timeout"),
        (ApnsConnectError, "connection_error"),
        (ConnectionClosed, "connection_closed"),
        (StreamResetError, "stream_reset"),
        (MalformedResponseError, "malformed_response"),
        (h2.exceptions.H2Error, "protocol_error"),
        (OSError, "connection_error"),
    )
    MAX_CONNECTIONS = 4
    # Sends waiting for a response at once, per provider. The deadline starts when a send gets
    # a slot, so this also bounds how long a big batch queues on a connection before it.
    MAX_IN_FLIGHT = 1000
    CLOSE_GRACE_SECONDS = 2.0

    def __init__(
        self,
        app: AppProfile,
        config: ApnsConfig,
        *,
        send_timeout_seconds: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.app = app
        self.config = config
        self.send_timeout_seconds = send_timeout_seconds
        self.max_connections = max_connections
        self._pools: dict[Environment, ApnsConnectionPool] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: asyncio.Semaphore | None = None
        self._auth_provider: AuthorizationHeaderProvider | None = None

    # -- what the gateway asks of every provider class ------------------------------------------

    @classmethod
    def validate_token(cls, token: str) -> None:
        if not _APNS_TOKEN.fullmatch(token) or len(token) % 2:
            raise ValueError(
                "an APNs device token is hexadecimal, 64 characters for 32 bytes "
                f"(got {len(token)} characters)"
            )

    @classmethod
    def check_payload(cls, message: PushMessage, app: AppProfile) -> None:
        check_apns_payload(message, app)

    @classmethod
    def default_environment(cls, config: BaseModel | None) -> Environment:
        if isinstance(config, ApnsConfig):
            return Environment(config.environment)
        return Environment.PRODUCTION

    @classmethod
    def simulator(cls) -> AbstractAsyncContextManager[ApnsSimulator]:
        return ApnsSimulator()

    @classmethod
    def sandbox_config(cls, simulator: Any, app_id: str, folder: Path) -> ApnsConfig:
        assert isinstance(simulator, ApnsSimulator)
        return ApnsConfig.model_validate(simulator.apns_config(topic=f"sandbox.{app_id}"))

    # -- sending --------------------------------------------------------------------------------

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        """One report per message, in order; never raises for provider or transport errors."""
        if len(messages) == 1:  # the worker's sliding window sends one at a time: no task
            return [await self.send_one(messages[0])]
        return list(await asyncio.gather(*(self.send_one(message) for message in messages)))

    async def send_one(self, message: PushMessage) -> DeliveryReport:
        """Send ``message`` and classify the answer."""
        try:
            request = build_apns_request(message, self.app)
        except ValueError as exc:
            return DeliveryReport(Outcome.FAILED, reason=f"InvalidPayload: {exc}")
        if len(request.body) > APNS_MAX_PAYLOAD_BYTES:
            return DeliveryReport(Outcome.FAILED, reason="PayloadTooLarge", status=413)
        try:
            pool, in_flight = self._pool_for(message.environment)
        except (OSError, ssl.SSLError, ValueError) as exc:
            # Unreadable key, certificate or CA file: no send can work until config is fixed.
            log.error("APNs for app %s cannot start: %s", self.app.id, exc)
            return DeliveryReport(Outcome.FAILED, reason=f"configuration_error: {exc}")
        async with in_flight:
            try:
                async with asyncio.timeout(self.send_timeout_seconds):
                    response = await pool.send(request)
            except Exception as exc:
                return self.transport_failure_report(exc, message)
        return self.classify(response, request)

    def classify(self, response: ApnsResponse, request: ApnsRequest) -> DeliveryReport:
        """Turn one APNs response into a report through :attr:`OUTCOMES`."""
        outcome = self.OUTCOMES.get((response.status, response.reason)) or self.OUTCOMES.get(
            (response.status, None),
            Outcome.RETRY if response.status >= 500 else Outcome.FAILED,
        )
        if outcome is Outcome.SENT:
            # Apple always echoes apns-id; if a response lacks it, ours is the same id.
            return DeliveryReport(
                outcome, provider_id=response.apns_id or request.apns_id, status=response.status
            )
        invalid_since = None
        if (
            outcome is Outcome.TOKEN_DEAD
            and response.reason in self.TIMESTAMPED_REASONS
            and response.timestamp_ms is not None
        ):
            invalid_since = datetime.fromtimestamp(response.timestamp_ms / 1000, tz=UTC)
        return DeliveryReport(
            outcome,
            provider_id=response.apns_id or request.apns_id,
            reason=response.reason or f"HTTP {response.status}",
            status=response.status,
            retry_after=(
                retry_after_seconds(response.retry_after) if outcome is Outcome.RETRY else None
            ),
            token_invalid_since=invalid_since,
            misconfiguration=outcome is Outcome.TOKEN_DEAD
            and response.reason in self.MISCONFIGURATION_REASONS,
        )

    def transport_failure_report(self, exc: Exception, message: PushMessage) -> DeliveryReport:
        """A report for a send that got no APNs response."""
        for error_type, reason in self.TRANSPORT_ERRORS:
            if isinstance(exc, error_type):
                log.info(
                    "APNs send to …%s for app %s: %s (%s)",
                    message.token[-6:],
                    self.app.id,
                    reason,
                    exc,
                )
                return DeliveryReport(Outcome.RETRY, reason=reason)
        log.exception("APNs send to …%s failed unexpectedly", message.token[-6:])
        return DeliveryReport(Outcome.FAILED, reason=f"internal_error: {type(exc).__name__}")

    def pending_request_count(self) -> int:
        """Requests still tracked by any open connection, ours or aioapns's own tables. Zero
        whenever no send is in progress; tests use it to prove nothing accumulates."""
        return sum(
            connection.pending_streams + connection.upstream_tables_size
            for pool in self._pools.values()
            for connection in pool.connections
            if isinstance(connection, HardenedConnection)
        )

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose(self.CLOSE_GRACE_SECONDS)

    # -- construction, inside the running loop -------------------------------------------------

    def _pool_for(self, environment: Environment) -> tuple[ApnsConnectionPool, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Connections belong to the loop that made them; a new loop starts afresh.
            self._loop = loop
            self._pools = {}
            self._in_flight = asyncio.Semaphore(self.MAX_IN_FLIGHT)
        assert self._in_flight is not None
        pool = self._pools.get(environment)
        if pool is None:
            pool = self._pools[environment] = self._make_pool(environment)
        return pool, self._in_flight

    def _make_pool(self, environment: Environment) -> ApnsConnectionPool:
        apple_host = APNS_HOSTS[environment]
        host, port = apple_host, APNS_PORT
        if self.config.endpoint is not None:
            # The endpoint replaces where we connect; the :authority still names Apple's host
            # for the environment, so a simulator (or proxy) can tell the two apart.
            endpoint = urlsplit(self.config.endpoint)
            host, port = endpoint.hostname or host, endpoint.port or APNS_PORT
        context = ssl.create_default_context(
            cafile=str(self.config.ca_file) if self.config.ca_file else None
        )
        context.set_alpn_protocols(["h2"])
        if self.config.cert_file is not None:
            context.load_cert_chain(str(self.config.cert_file))
        log.info(
            "APNs %s for app %s via %s:%s (%s auth)",
            environment,
            self.app.id,
            host,
            port,
            "certificate" if self.config.cert_file else "token",
        )
        return ApnsConnectionPool(
            topic=self.config.topic,
            host=host,
            port=port,
            authority=apple_host,
            ssl_context=context,
            auth_provider=self._provider_token_header(),
            max_connections=self.max_connections,
        )

    def _provider_token_header(self) -> AuthorizationHeaderProvider | None:
        if self.config.cert_file is not None:
            return None
        if self._auth_provider is None:
            assert self.config.key_file and self.config.key_id and self.config.team_id
            self._auth_provider = ProviderTokenHeader(
                self.config.key_file.read_text(encoding="ascii"),
                self.config.key_id,
                self.config.team_id,
            )
        return self._auth_provider
