"""Firebase Cloud Messaging through firebase-admin's ``send_each_async`` (FCM HTTP v1).

:class:`FcmProvider` sends for one configured app: one firebase ``App`` named after the app id,
credentials from the app's service account (its ``token_uri`` honoured), the FCM endpoint
overridable from config. Every FCM answer becomes a :class:`~tokens.reports.DeliveryReport`
through one table, :attr:`FcmProvider.OUTCOMES`.

Where firebase-admin 7.7.0 falls short, this module works around it, and says so at the spot:

- the async client refreshes OAuth tokens with blocking ``requests`` calls on the event loop
  (and cannot be given a CA file); we refresh in a worker thread with our own session;
- its httpx client binds its connections to the first event loop that uses it, and
  ``App`` deletion closes it with ``asyncio.run()``, which fails inside a running loop; we give
  each event loop its own client, closed when that loop shuts down;
- its transport retries 500/503 itself (up to 4 times, sleeping, ignoring ``Retry-After``) and
  ``send_each_async`` hides the response headers; we disable those retries, leave retrying to
  the delivery pipeline, and read ``Retry-After`` from the exception's ``http_response``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
import warnings
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import firebase_admin
import google.auth.exceptions
import google.auth.transport.requests
import httpx
from firebase_admin import credentials, messaging
from pydantic import BaseModel, ConfigDict

from gateway.providers.base import (
    AppProfile,
    PayloadRejected,
    PushMessage,
    PushProvider,
    retry_after_seconds,
)
from gateway.simulators.fcm import FcmSimulator
from policies.tiers import Tier
from tokens.models import Platform
from tokens.reports import DeliveryReport, Outcome

logger = logging.getLogger(__name__)

FCM_DEFAULT_ENDPOINT = "https://fcm.googleapis.com"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# FCM refuses a TTL above four weeks; a longer expiry is clamped rather than refused.
MAX_TTL = timedelta(weeks=4)
FCM_MAX_PAYLOAD_BYTES = 4096
MAX_TOKEN_LENGTH = 4096
_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]+$")
# FCM refuses these data keys: "from", "notification", "message_type", and any key starting
# with "google" or "gcm" (https://firebase.google.com/docs/cloud-messaging/concept-options)
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")


class FcmConfig(BaseModel):
    """``[apps.fcm]``: a service account (its ``token_uri`` is honoured) and the project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_account_file: Path
    project_id: str | None = None  # defaults to the service account's project_id
    endpoint: str | None = None  # base URL replacing https://fcm.googleapis.com (simulators, tests)
    ca_file: Path | None = None


def fcm_payload_size(message: PushMessage) -> int:
    """About how many bytes FCM counts against its limit: data keys and values as sent (FCM
    data is string to string, see :func:`_string_data`), plus title and body."""
    size = len((message.title or "").encode()) + len((message.body or "").encode())
    for key, value in (_string_data(message.data) or {}).items():
        size += len(key.encode()) + len(value.encode())
    return size


def build_fcm_message(
    message: PushMessage, app: AppProfile, now: datetime | None = None
) -> messaging.Message:
    """Map one :class:`PushMessage` onto an FCM v1 message.

    - ``title``/``body`` become the cross-platform ``notification``; a data-only message has
      none, so the app's own code handles it.
    - ``data`` values that are not strings are sent as their compact JSON (FCM data is
      string→string): ``{"n": 3, "tags": ["a"]}`` arrives as ``{"n": "3", "tags": "[\\"a\\"]"}``.
    - ``android.priority`` is ``high`` for transactional, else ``normal``.
    - ``android.ttl`` is the time left until ``expires_at`` (whole seconds, at least 0, at most
      four weeks), measured from ``now`` (the current time when not given).
    - ``android.collapse_key`` from ``collapse_key``.
    - ``android.notification`` (notification messages only): ``channel_id`` from the app's
      ``channels`` for the tier when set, ``sound``, and ``badge`` as ``notification_count``:
      Android has no absolute icon badge like APNs; launchers that badge show this count.
    - ``thread_id`` has no Android counterpart (``tag`` *replaces* notifications, it does not
      group them) and is not sent.
    """
    now = now or datetime.now(UTC)
    ttl = min(max(message.expires_at - now, timedelta(0)), MAX_TTL)
    android_notification = None
    notification = None
    if not message.is_data_only:
        notification = messaging.Notification(title=message.title, body=message.body)
        android_notification = messaging.AndroidNotification(
            channel_id=app.channels.get(message.tier),
            sound=message.sound,
            notification_count=message.badge,
        )
    android = messaging.AndroidConfig(
        priority="high" if message.tier is Tier.TRANSACTIONAL else "normal",
        ttl=int(ttl.total_seconds()),
        collapse_key=message.collapse_key,
        notification=android_notification,
    )
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates Message.token in favour of Firebase installation IDs,
        # but Android apps hand us registration tokens (FirebaseMessaging.getToken()), which
        # the v1 API still addresses as message.token.
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return messaging.Message(
            token=message.token,
            notification=notification,
            data=_string_data(message.data),
            android=android,
        )


def _string_data(data: Mapping[str, Any]) -> dict[str, str] | None:
    if not data:
        return None
    return {
        str(key): value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in data.items()
    }


class FcmProvider(PushProvider):
    """Sends one configured app's Android messages through FCM.

    Usable from any event loop, and from several in turn: each loop gets its own HTTP client,
    closed when that loop shuts down (``asyncio.run`` / ``asyncio.Runner`` / aiohttp's
    ``run_app`` all run ``shutdown_asyncgens``) or by :meth:`close` in that loop.
    """

    name = "fcm"
    platform = Platform.ANDROID
    config_model = FcmConfig

    MAX_BATCH_SIZE = 500  # send_each_async refuses more

    # errorCode (FcmError detail), else google.rpc status, else transport reason -> outcome.
    # https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
    OUTCOMES: ClassVar[Mapping[str, Outcome]] = {
        # The app was uninstalled or the token expired: it will never work again.
        "UNREGISTERED": Outcome.TOKEN_DEAD,
        # The token belongs to another Firebase project's sender: never deliverable by us.
        "SENDER_ID_MISMATCH": Outcome.TOKEN_DEAD,
        # A malformed message; TOKEN_DEAD instead when it names the token (_names_token).
        "INVALID_ARGUMENT": Outcome.FAILED,
        "QUOTA_EXCEEDED": Outcome.RETRY,
        "RESOURCE_EXHAUSTED": Outcome.RETRY,
        "UNAVAILABLE": Outcome.RETRY,
        "INTERNAL": Outcome.RETRY,
        "DEADLINE_EXCEEDED": Outcome.RETRY,
        # Our APNs/web-push credentials at Firebase are wrong: the token is not at fault.
        "THIRD_PARTY_AUTH_ERROR": Outcome.FAILED,
        "UNAUTHENTICATED": Outcome.FAILED,
        "PERMISSION_DENIED": Outcome.FAILED,
        "NOT_FOUND": Outcome.FAILED,
        # Outcomes without an FCM answer.
        "timeout": Outcome.RETRY,
        "connection_error": Outcome.RETRY,
        "oauth_unavailable": Outcome.RETRY,  # the token endpoint could not be reached
        "oauth_refused": Outcome.FAILED,  # the token endpoint refused our service account
        "expired": Outcome.FAILED,  # expires_at passed before the send
        "invalid_message": Outcome.FAILED,  # firebase-admin refused to encode it
    }
    # Statuses deciding an error code the table does not know.
    RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
    # A dead-token answer that, for many tokens at once, means the app's FCM project is wrong
    # rather than the tokens: the registry's mass-invalidation guard counts it.
    MISCONFIGURATION_REASONS: ClassVar[frozenset[str]] = frozenset({"SENDER_ID_MISMATCH"})

    def __init__(
        self, app: AppProfile, config: FcmConfig, *, send_timeout_seconds: float = 10.0
    ) -> None:
        self._app = app
        credential = credentials.Certificate(str(config.service_account_file))
        project_id = config.project_id or credential.project_id
        self._token_source = _TokenSource(
            credential.get_credential(), send_timeout_seconds, config.ca_file
        )
        self._http = _PerLoopHttpClient(self._token_source, send_timeout_seconds, config.ca_file)
        try:
            self._firebase_app = firebase_admin.initialize_app(
                credential, options={"projectId": project_id}, name=app.id
            )
        except ValueError as exc:
            raise ValueError(
                f"a firebase app named {app.id!r} already exists: close the previous "
                f"FcmProvider for apps[{app.id}] before creating another"
            ) from exc
        service = messaging._get_messaging_service(self._firebase_app)
        # firebase-admin has no public endpoint option; the URL lives on the service instance
        # (class constant FCM_URL). We set it on this app's instance only: patching the class
        # would redirect every firebase app in the process.
        endpoint = (config.endpoint or FCM_DEFAULT_ENDPOINT).rstrip("/")
        service._fcm_url = f"{endpoint}/v1/projects/{project_id}/messages:send"
        # The service's own httpx client is loop-bound and retries 5xx itself (module doc).
        service._async_client = self._http
        self.fcm_url: str = service._fcm_url

    # -- what the gateway asks of every provider class ------------------------------------------

    @classmethod
    def validate_token(cls, token: str) -> None:
        if not token or len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
            raise ValueError(
                "an FCM registration token is 1-4096 characters of letters, digits and '_-:.'"
            )

    @classmethod
    def check_payload(cls, message: PushMessage, app: AppProfile) -> None:
        for key in message.data:
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                raise PayloadRejected(
                    f"data key {key!r} is reserved by FCM; rename it", field=f"data.{key}"
                )
        size = fcm_payload_size(message)
        if size > FCM_MAX_PAYLOAD_BYTES:
            raise PayloadRejected(
                f"the FCM payload would be about {size} bytes; FCM accepts at most "
                f"{FCM_MAX_PAYLOAD_BYTES} (shorten title, body or data)",
                too_large=True,
            )

    @classmethod
    def simulator(cls) -> AbstractAsyncContextManager[FcmSimulator]:
        return FcmSimulator()

    @classmethod
    def sandbox_config(cls, simulator: Any, app_id: str, folder: Path) -> FcmConfig:
        assert isinstance(simulator, FcmSimulator)
        return FcmConfig.model_validate(
            simulator.fcm_config(folder, project_id=f"sandbox-{app_id}")
        )

    # -- sending --------------------------------------------------------------------------------

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        """Send each message; one report per message, in order. Never raises for FCM or
        transport errors."""
        now = datetime.now(UTC)
        reports: list[DeliveryReport | None] = [None] * len(messages)
        pending: list[tuple[int, messaging.Message]] = []
        for index, message in enumerate(messages):
            if message.expires_at <= now:
                reports[index] = self.report_for("expired")
            else:
                pending.append((index, build_fcm_message(message, self._app, now)))

        if pending:
            refusal = await self._token_source.ensure_fresh()
            for start in range(0, len(pending), self.MAX_BATCH_SIZE):
                batch = pending[start : start + self.MAX_BATCH_SIZE]
                if refusal is not None:
                    batch_reports = [refusal] * len(batch)
                else:
                    batch_reports = await self._send_batch([fcm for _, fcm in batch])
                for (index, _), report in zip(batch, batch_reports, strict=True):
                    reports[index] = report
        return [report for report in reports if report is not None]

    async def close(self) -> None:
        """Close this loop's HTTP client and delete the firebase app (its name is free again)."""
        await self._http.aclose()
        # delete_app() calls the service's close(), which runs asyncio.run(aclose()): that
        # refuses to run inside a running loop, so it runs in a thread, where our aclose()
        # finds no client of its throwaway loop to close.
        await asyncio.to_thread(firebase_admin.delete_app, self._firebase_app)

    async def _send_batch(self, batch: list[messaging.Message]) -> list[DeliveryReport]:
        try:
            response = await messaging.send_each_async(batch, app=self._firebase_app)
        except ValueError:
            if len(batch) == 1:
                logger.warning("firebase-admin refused to encode an FCM message", exc_info=True)
                return [self.report_for("invalid_message")]
            # One message firebase-admin cannot encode sinks the whole batch: isolate it.
            singles = [await self._send_batch([message]) for message in batch]
            return [reports[0] for reports in singles]
        return [self.classify(result) for result in response.responses]

    @classmethod
    def classify(cls, result: messaging.SendResponse) -> DeliveryReport:
        """Turn one ``send_each_async`` result into a report through :attr:`OUTCOMES`."""
        if result.success:
            # firebase-admin keeps the HTTP answer of a success to itself; it was a 200
            return DeliveryReport(Outcome.SENT, provider_id=result.message_id, status=200)
        error = result.exception
        http_response: httpx.Response | None = getattr(error, "http_response", None)
        if http_response is None:
            cause = getattr(error, "cause", None)
            if isinstance(cause, httpx.TimeoutException):
                return cls.report_for("timeout")
            if isinstance(cause, httpx.TransportError):
                return cls.report_for("connection_error")
            logger.warning("FCM send failed without a response: %r", error)
            return cls.report_for(getattr(error, "code", None) or "UNKNOWN")
        status = http_response.status_code
        code, names_token = _parse_error(http_response)
        outcome = cls.OUTCOMES.get(code)
        if outcome is None:
            outcome = Outcome.RETRY if status in cls.RETRY_STATUSES else Outcome.FAILED
        if code == "INVALID_ARGUMENT" and names_token:
            outcome = Outcome.TOKEN_DEAD
        retry_after = None
        if outcome is Outcome.RETRY:
            retry_after = retry_after_seconds(http_response.headers.get("Retry-After"))
        return DeliveryReport(
            outcome,
            reason=code,
            status=status,
            retry_after=retry_after,
            misconfiguration=outcome is Outcome.TOKEN_DEAD and code in cls.MISCONFIGURATION_REASONS,
        )

    @classmethod
    def report_for(cls, reason: str) -> DeliveryReport:
        """The report for an outcome decided without an FCM answer (``"timeout"`` ...)."""
        return DeliveryReport(cls.OUTCOMES.get(reason, Outcome.FAILED), reason=reason)


def _parse_error(response: httpx.Response) -> tuple[str, bool]:
    """``(errorCode or google.rpc status or "HTTP_<status>", whether it names the token)``."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return f"HTTP_{response.status_code}", False
    code = error.get("status")
    names_token = "registration token" in str(error.get("message", "")).lower()
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and detail.get("errorCode"):
            code = detail["errorCode"]
        elif detail.get("@type") == BAD_REQUEST_TYPE:
            names_token = names_token or any(
                isinstance(violation, dict) and violation.get("field") == "message.token"
                for violation in detail.get("fieldViolations") or []
            )
    return str(code or f"HTTP_{response.status_code}"), names_token


class _TokenSource:
    """Keeps the service account's OAuth2 access token fresh without blocking the event loop.

    firebase-admin's auth flow calls google-auth's ``refresh`` with a blocking ``requests``
    transport on the event loop thread (and with no way to pass a CA file): a slow token
    endpoint stalls every coroutine, and an in-process token endpoint deadlocks. We refresh in
    a worker thread instead, before a batch, and again once when FCM answers 401
    UNAUTHENTICATED with a token we just sent.
    """

    def __init__(self, credential: Any, timeout: float, ca_file: object | None) -> None:
        self._credential = credential
        self._timeout = timeout
        self._lock = threading.Lock()  # one refresh at a time, whichever loop asks
        self._request = google.auth.transport.requests.Request()
        # Per request, not on the session: requests lets $REQUESTS_CA_BUNDLE override a
        # session's verify (psf/requests#3829), but not a request's.
        self._verify = str(ca_file) if ca_file is not None else None

    @property
    def token(self) -> str | None:
        token: str | None = self._credential.token
        return token

    def apply(self, headers: httpx.Headers) -> None:
        headers["Authorization"] = f"Bearer {self._credential.token}"

    async def ensure_fresh(self, stale: str | None = None) -> DeliveryReport | None:
        """Refresh when the token is missing, near expiry, or still ``stale``; a report for
        every message of the batch when the token endpoint fails, else ``None``."""
        if self._credential.valid and (stale is None or self._credential.token != stale):
            return None
        try:
            await asyncio.to_thread(self._refresh, stale)
        except google.auth.exceptions.RefreshError as exc:
            logger.error("the OAuth2 token endpoint refused the service account: %s", exc)
            retryable = bool(getattr(exc, "retryable", False))
            return FcmProvider.report_for("oauth_unavailable" if retryable else "oauth_refused")
        except google.auth.exceptions.TransportError as exc:
            logger.warning("the OAuth2 token endpoint is unreachable: %s", exc)
            return FcmProvider.report_for("oauth_unavailable")
        return None

    def _refresh(self, stale: str | None) -> None:
        with self._lock:
            if self._credential.valid and (stale is None or self._credential.token != stale):
                return  # another caller refreshed while we waited
            try:
                self._credential.refresh(self._timed_request)
            finally:
                # A refresh an hour needs no kept-alive connection to the token endpoint.
                self._request.session.close()

    def _timed_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        if self._verify is not None:
            kwargs.setdefault("verify", self._verify)
        return self._request(*args, **kwargs)


class _ServiceAccountAuth(httpx.Auth):
    """Bearer token from :class:`_TokenSource`; one refresh and resend on 401 UNAUTHENTICATED.

    A 401 ``THIRD_PARTY_AUTH_ERROR`` is about our APNs credentials at Firebase, not our OAuth
    token: refreshing would not help, so it is returned as is (firebase-admin refreshes twice).
    """

    requires_response_body = True

    def __init__(self, tokens: _TokenSource) -> None:
        self._tokens = tokens

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent_token = self._tokens.token
        self._tokens.apply(request.headers)
        response = yield request
        if response.status_code == 401:
            await response.aread()
        if (
            response.status_code == 401
            and _parse_error(response)[0] == "UNAUTHENTICATED"
            and await self._tokens.ensure_fresh(stale=sent_token) is None
        ):
            self._tokens.apply(request.headers)
            yield request


@dataclass(frozen=True, slots=True)
class _LoopClient:
    client: httpx.AsyncClient
    closer: AsyncGenerator[None, None]
    slots: asyncio.Semaphore


class _PerLoopHttpClient:
    """Stands in for firebase-admin's ``HttpxAsyncClient`` inside its messaging service.

    httpx (through httpcore and anyio) binds pooled connections to the loop that opened them;
    reused from another loop they fail or hang. So each running loop gets its own
    ``httpx.AsyncClient``, created on first use and closed by an async generator parked on that
    loop: ``loop.shutdown_asyncgens()`` finalizes it when the loop shuts down, so a loop that
    goes away without calling :meth:`aclose` leaks no sockets.
    """

    # Requests in flight per loop. send_each_async starts all 500 of a batch at once; queued
    # inside httpcore's pool they cost O(n^2) reassignment work, queued on a semaphore nothing
    # (raw send_each_async is about half as fast on the simulator: bench_providers_fcm).
    # 100 matches FCM's usual HTTP/2 concurrent-stream limit on its one multiplexed
    # connection; over HTTP/1.1 (the simulator) a few connections beat many on loopback.
    MAX_IN_FLIGHT = 100
    MAX_CONNECTIONS = 10

    def __init__(self, tokens: _TokenSource, timeout: float, ca_file: object | None) -> None:
        self._tokens = tokens
        self._timeout = timeout
        self._ca_file = ca_file
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """What firebase-admin calls: send, then raise ``httpx.HTTPStatusError`` on 4xx/5xx."""
        loop_client = await self._loop_client()
        async with loop_client.slots:
            response = await loop_client.client.request(method, url, **kwargs)
        return response.raise_for_status()

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one."""
        loop_client = self._clients.pop(asyncio.get_running_loop(), None)
        if loop_client is not None:
            await loop_client.closer.aclose()

    async def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        loop_client = self._clients.get(loop)
        if loop_client is None:
            client = self._new_client()
            closer = _close_at_loop_shutdown(client)
            await anext(closer)  # parks it on this loop, registered with shutdown_asyncgens
            loop_client = _LoopClient(client, closer, asyncio.Semaphore(self.MAX_IN_FLIGHT))
            self._clients[loop] = loop_client
        return loop_client

    def _new_client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self._ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self._ca_file))
        return httpx.AsyncClient(
            http2=True,
            verify=verify,
            timeout=self._timeout,
            limits=httpx.Limits(
                max_connections=self.MAX_CONNECTIONS,
                max_keepalive_connections=self.MAX_CONNECTIONS,
            ),
            auth=_ServiceAccountAuth(self._tokens),
        )


async def _close_at_loop_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()
