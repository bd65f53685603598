"""An in-process Firebase Cloud Messaging simulator speaking the real wire protocol.

It serves the two endpoints firebase-admin talks to, on 127.0.0.1 and an ephemeral port:

- ``POST /token``: Google's OAuth2 token endpoint for service accounts (RFC 7523 JWT bearer
  grant). The RS256 assertion is verified against the public key of a service account the
  simulator issued (:meth:`FcmSimulator.new_service_account`), whose ``token_uri`` points here.
- ``POST /v1/projects/{project}/messages:send``: the FCM HTTP v1 send endpoint. It requires a
  bearer token from ``/token`` for a service account of that project, validates the message the
  way FCM does for the fields pushgate uses, and answers ``{"name": ...}`` or a
  ``google.rpc.Status`` error carrying an ``FcmError`` detail, as documented at
  https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode.

It is scriptable (per token, see :meth:`FcmSimulator.fail_token`; per request count or time
window, see :meth:`FcmSimulator.inject`) and records every request it receives
(:attr:`FcmSimulator.requests`). Tests, benchmarks and the gateway's sandbox mode start it with
``async with FcmSimulator() as sim: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

logger = logging.getLogger(__name__)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs its assertion for Google's own token endpoint, whatever the
# service account's token_uri says; the real endpoint accepts exactly that audience.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MESSAGING_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)

# errorCode -> (HTTP status, google.rpc status, message), as FCM answers them.
FCM_ERRORS: Mapping[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for this project."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
INVALID_TOKEN_MESSAGE = "The registration token is not a valid FCM registration token"

# Real tokens are ~160 characters of this alphabet; shorter ones keep test output readable.
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_:\-]{1,4096}$")
_DURATION_PATTERN = re.compile(r"^\d{1,12}(\.\d{1,9})?s$")
_MAX_TTL_SECONDS = 28 * 24 * 3600
_MAX_PAYLOAD_BYTES = 4096
_RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
_RESERVED_DATA_PREFIXES = ("google.", "gcm.")

# The fields of the v1 Message resource the simulator knows, per object: anything else is
# refused the way FCM refuses unknown JSON names.
_KNOWN_FIELDS: Mapping[str, frozenset[str]] = {
    "": frozenset({"message", "validate_only"}),
    "message": frozenset(
        {"name", "token", "fid", "topic", "condition", "data", "notification", "android", "apns",
         "webpush", "fcm_options"}
    ),
    "message.notification": frozenset({"title", "body", "image"}),
    "message.android": frozenset(
        {"collapse_key", "priority", "ttl", "restricted_package_name", "data", "notification",
         "fcm_options", "direct_boot_ok", "bandwidth_constrained_ok", "restricted_satellite_ok"}
    ),
    "message.android.notification": frozenset(
        {"title", "body", "icon", "color", "sound", "tag", "click_action", "body_loc_key",
         "body_loc_args", "title_loc_key", "title_loc_args", "channel_id", "ticker", "sticky",
         "event_time", "local_only", "notification_priority", "default_sound",
         "default_vibrate_timings", "default_light_settings", "vibrate_timings", "visibility",
         "notification_count", "light_settings", "image", "proxy"}
    ),
}  # fmt: skip
_STRING_FIELDS = frozenset(
    {"message.token", "message.fid", "message.topic", "message.condition",
     "message.notification.title", "message.notification.body", "message.notification.image",
     "message.android.collapse_key",
     "message.android.restricted_package_name", "message.android.notification.title",
     "message.android.notification.body", "message.android.notification.sound",
     "message.android.notification.channel_id", "message.android.notification.tag",
     "message.android.notification.icon", "message.android.notification.click_action"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fault:
    """What the simulator does to a request instead of (or before) answering it normally.

    ``error`` is an FCM ``errorCode`` from :data:`FCM_ERRORS`; ``retry_after`` is sent verbatim as
    the ``Retry-After`` header; ``delay`` seconds pass before anything else happens; ``reset``
    drops the connection without an answer. ``field`` names the field an ``INVALID_ARGUMENT``
    is about (``message.token`` by default, which means "this token is malformed").
    """

    error: str | None = None
    retry_after: str | None = None
    delay: float = 0.0
    reset: bool = False
    field: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in FCM_ERRORS:
            raise ValueError(f"unknown FCM errorCode {self.error!r}; use one of {list(FCM_ERRORS)}")


@dataclass(slots=True)
class _Injection:
    fault: Fault
    remaining: int | None  # requests it still applies to; None: no count limit
    until: float | None  # time.monotonic() after which it no longer applies; None: no deadline

    def is_active(self, now: float) -> bool:
        return (self.remaining is None or self.remaining > 0) and (
            self.until is None or now < self.until
        )


@dataclass(slots=True)
class RecordedRequest:
    """One request the simulator received, and what it answered (``status`` 0: connection reset)."""

    endpoint: Literal["send", "token"]
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 0
    error_code: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The FCM ``message`` object of a send request (empty for token requests)."""
        message = self.body.get("message")
        return message if isinstance(message, dict) else {}

    @property
    def token(self) -> str | None:
        token = self.message.get("token")
        return token if isinstance(token, str) else None


@dataclass(slots=True)
class _Account:
    client_email: str
    project_id: str
    public_key: rsa.RSAPublicKey


class FcmSimulator:
    """The FCM HTTP v1 API and Google's OAuth2 token endpoint, in process, on loopback.

    Pass ``ssl_context`` (a server context) to serve HTTPS; clients then need the CA that signed
    its certificate (``FcmConfig.ca_file``).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = asyncio.Event()
        self._accounts: dict[str, _Account] = {}  # by private_key_id (the assertion's kid)
        self._access_tokens: dict[str, _Account] = {}
        self._token_faults: dict[str, Fault] = {}
        self._injections: list[_Injection] = []
        self._message_ids = itertools.count(1)
        self.requests: list[RecordedRequest] = []

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 on an ephemeral port."""
        app = web.Application()
        app.router.add_post("/token", self._handle_token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._handle_send)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl_context, backlog=1024)
        await site.start()
        logger.info("FCM simulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        """Stop listening; requests held by an injected delay are answered at once."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def endpoint(self) -> str:
        """The base URL replacing ``https://fcm.googleapis.com`` (``FcmConfig.endpoint``)."""
        if self._port is None:
            raise RuntimeError("the FCM simulator is not started")
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def token_uri(self) -> str:
        """The OAuth2 token endpoint written into issued service accounts."""
        return f"{self.endpoint}/token"

    # -- credentials ------------------------------------------------------------------------

    def new_service_account(
        self, project_id: str = "pushgate-sandbox", *, key: rsa.RSAPrivateKey | None = None
    ) -> dict[str, str]:
        """Generate a throwaway service account the simulator trusts, with a fresh RSA key
        unless ``key`` is given (tests reuse one: 2048-bit generation takes a while).

        Returns the JSON document Google would let you download, with ``token_uri`` pointing
        at this simulator.
        """
        key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"firebase-adminsdk-{key_id[:5]}@{project_id}.iam.gserviceaccount.com"
        self._accounts[key_id] = _Account(email, project_id, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        }

    def write_service_account(
        self,
        path: Path,
        project_id: str = "pushgate-sandbox",
        *,
        key: rsa.RSAPrivateKey | None = None,
    ) -> Path:
        """Write :meth:`new_service_account` to ``path`` (mode 0600) and return the path."""
        path.write_text(json.dumps(self.new_service_account(project_id, key=key), indent=2))
        path.chmod(0o600)
        return path

    def fcm_config(
        self,
        directory: Path,
        project_id: str = "pushgate-sandbox",
        *,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, Any]:
        """An ``[apps.fcm]`` section (as the config file would hold it) delivering to this
        simulator with a new service account written into ``directory``."""
        account = self.write_service_account(
            directory / f"fcm-service-account-{secrets.token_hex(4)}.json", project_id, key=key
        )
        return {
            "service_account_file": account,
            "project_id": project_id,
            "endpoint": self.endpoint,
        }

    def revoke_access_tokens(self) -> None:
        """Forget every access token issued so far, as if they had expired server-side."""
        self._access_tokens.clear()

    # -- scripting ---------------------------------------------------------------------------

    def fail_token(self, token: str, fault: Fault | str) -> None:
        """Answer every send to ``token`` with ``fault`` (or that errorCode) until cleared."""
        self._token_faults[token] = Fault(error=fault) if isinstance(fault, str) else fault

    def inject(
        self, fault: Fault, *, count: int | None = None, seconds: float | None = None
    ) -> None:
        """Apply ``fault`` to the next ``count`` send requests and/or for the next ``seconds``.

        With neither, it applies until :meth:`clear_faults`. Injections are checked in the
        order they were added, before authentication (an overloaded frontend answers first).
        """
        until = time.monotonic() + seconds if seconds is not None else None
        self._injections.append(_Injection(fault, count, until))

    def clear_faults(self) -> None:
        self._token_faults.clear()
        self._injections.clear()

    # -- recorded traffic --------------------------------------------------------------------

    @property
    def sends(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.endpoint == "send"]

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.endpoint == "token"]

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The messages answered with success (``validate_only`` ones excluded)."""
        return [
            request.message
            for request in self.sends
            if request.status == 200 and not request.body.get("validate_only")
        ]

    # -- handlers ----------------------------------------------------------------------------

    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        record = RecordedRequest("token", request.path, dict(request.headers), form)
        self.requests.append(record)
        if form.get("grant_type") != JWT_BEARER_GRANT:
            return self._oauth_error(record, "unsupported_grant_type", "Invalid grant_type.")
        assertion = str(form.get("assertion", ""))
        try:
            key_id = jwt.get_unverified_header(assertion).get("kid")
            account = self._accounts.get(str(key_id))
            if account is None:
                return self._oauth_error(record, "invalid_grant", "Invalid JWT Signature.")
            claims = jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, self.token_uri],
                issuer=account.client_email,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return self._oauth_error(record, "invalid_grant", f"Invalid JWT: {exc}")
        if not MESSAGING_SCOPES & set(str(claims["scope"]).split()):
            return self._oauth_error(record, "invalid_scope", "Missing a messaging scope.")
        access_token = f"ya29.sim-{secrets.token_urlsafe(24)}"
        self._access_tokens[access_token] = account
        record.status = 200
        return web.json_response(
            {"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"}
        )

    def _oauth_error(
        self, record: RecordedRequest, error: str, description: str
    ) -> web.StreamResponse:
        record.status, record.error_code = 400, error
        return web.json_response({"error": error, "error_description": description}, status=400)

    async def _handle_send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = RecordedRequest(
            "send", request.path, dict(request.headers), body if isinstance(body, dict) else {}
        )
        self.requests.append(record)

        injected = self._take_injection()
        if injected is not None:
            answer = await self._apply(injected, request, record)
            if answer is not None:
                return answer

        account = self._access_tokens.get(
            request.headers.get("Authorization", "").removeprefix("Bearer ")
        )
        if account is None:
            return self._error(
                record,
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        project = request.match_info["project"]
        if account.project_id != project:
            return self._error(
                record,
                403,
                "PERMISSION_DENIED",
                f"Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                "(or it may not exist).",
            )

        if not isinstance(body, dict):
            return self._invalid_argument(record, None, "Invalid JSON payload received.")
        violation = _find_violation(body)
        if violation is not None:
            return self._invalid_argument(record, *violation)

        token = record.token
        fault = self._token_faults.get(token) if token is not None else None
        if fault is not None:
            answer = await self._apply(fault, request, record)
            if answer is not None:
                return answer

        record.status = 200
        name = f"projects/{project}/messages/0:{next(self._message_ids):016d}"
        return web.json_response({"name": name})

    def _take_injection(self) -> Fault | None:
        now = time.monotonic()
        for injection in self._injections:
            if injection.is_active(now):
                if injection.remaining is not None:
                    injection.remaining -= 1
                return injection.fault
        return None

    async def _apply(
        self, fault: Fault, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse | None:
        """Carry out ``fault``; ``None`` means "now answer normally" (a pure delay)."""
        if fault.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=fault.delay)
        if fault.reset:
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; aiohttp drops this response with the connection.
            return web.Response(status=500)
        if fault.error is None:
            return None
        if fault.error == "INVALID_ARGUMENT":
            field_name = fault.field or "message.token"
            message = INVALID_TOKEN_MESSAGE if field_name == "message.token" else None
            return self._invalid_argument(record, field_name, message)
        status, rpc_status, message = FCM_ERRORS[fault.error]
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
        return self._error(record, status, rpc_status, message, fault.error, headers=headers)

    def _invalid_argument(
        self, record: RecordedRequest, field_name: str | None, message: str | None
    ) -> web.StreamResponse:
        extra: list[dict[str, Any]] = []
        if field_name is not None:
            description = message or f"Invalid value at '{field_name}'"
            extra.append(
                {
                    "@type": BAD_REQUEST_TYPE,
                    "fieldViolations": [{"field": field_name, "description": description}],
                }
            )
            message = message or f"Invalid value at '{field_name}'"
        return self._error(
            record,
            400,
            "INVALID_ARGUMENT",
            message or FCM_ERRORS["INVALID_ARGUMENT"][2],
            "INVALID_ARGUMENT",
            extra_details=extra,
        )

    def _error(
        self,
        record: RecordedRequest,
        status: int,
        rpc_status: str,
        message: str,
        error_code: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra_details: list[dict[str, Any]] | None = None,
    ) -> web.StreamResponse:
        details: list[dict[str, Any]] = []
        if error_code is not None:
            details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
        details.extend(extra_details or [])
        record.status, record.error_code = status, error_code or rpc_status
        error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
        if details:
            error["details"] = details
        return web.json_response({"error": error}, status=status, headers=headers)


def _find_violation(body: dict[str, Any]) -> tuple[str, str] | None:
    """The first (field, message) FCM would refuse in a send request body, or ``None``."""
    unknown = _unknown_field(body, "")
    if unknown is not None:
        return unknown
    message = body.get("message")
    if not isinstance(message, dict):
        return "message", "Invalid value at 'message': a Message object is required"
    for path, value in _walk(message, "message"):
        if path in _STRING_FIELDS and not isinstance(value, str):
            return path, f"Invalid value at '{path}' (TYPE_STRING), {json.dumps(value)}"
    targets = [name for name in ("token", "fid", "topic", "condition") if name in message]
    if len(targets) != 1:
        return "message", "Exactly one of token, fid, topic or condition must be set"
    token = message.get("token")
    if token is not None and not _TOKEN_PATTERN.match(token):
        return "message.token", INVALID_TOKEN_MESSAGE
    data_violation = _data_violation(message.get("data"), "message.data")
    if data_violation is not None:
        return data_violation
    android = message.get("android")
    if android is not None:
        android_violation = _android_violation(android)
        if android_violation is not None:
            return android_violation
    payload = json.dumps(
        {"data": message.get("data"), "notification": message.get("notification")}
    ).encode()
    if len(payload) > _MAX_PAYLOAD_BYTES:
        return "message", f"Message is too big: {len(payload)} bytes, the limit is 4096"
    return None


def _unknown_field(value: object, path: str) -> tuple[str, str] | None:
    known = _KNOWN_FIELDS.get(path)
    if known is None or not isinstance(value, dict):
        return None
    for name, child in value.items():
        child_path = f"{path}.{name}" if path else name
        if name not in known:
            return child_path, (
                f'Invalid JSON payload received. Unknown name "{name}" at '
                f"'{path or 'request'}': Cannot find field."
            )
        found = _unknown_field(child, child_path)
        if found is not None:
            return found
    return None


def _walk(value: object, path: str) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [(path, value)]
    if isinstance(value, dict):
        for name, child in value.items():
            pairs.extend(_walk(child, f"{path}.{name}"))
    return pairs


def _data_violation(data: object, path: str) -> tuple[str, str] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        return path, f"Invalid value at '{path}': a map<string, string> is required"
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            return (
                f"{path}[{index}].value",
                f"Invalid value at '{path}[{index}].value' (TYPE_STRING), {json.dumps(value)}",
            )
        if key in _RESERVED_DATA_KEYS or key.startswith(_RESERVED_DATA_PREFIXES):
            return path, f"Invalid data payload key: {key}"
    return None


def _android_violation(android: object) -> tuple[str, str] | None:
    if not isinstance(android, dict):
        return "message.android", "Invalid value at 'message.android'"
    priority = android.get("priority")
    if priority is not None and str(priority).upper() not in {"NORMAL", "HIGH"}:
        return "message.android.priority", (
            f"Invalid value at 'message.android.priority' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {priority!r}"
        )
    ttl = android.get("ttl")
    if ttl is not None:
        if not isinstance(ttl, str) or not _DURATION_PATTERN.match(ttl):
            return "message.android.ttl", (
                f"Invalid value at 'message.android.ttl' "
                f"(type.googleapis.com/google.protobuf.Duration), {json.dumps(ttl)}"
            )
        if float(ttl[:-1]) > _MAX_TTL_SECONDS:
            return "message.android.ttl", "The TTL must not exceed 4 weeks (2419200s)"
    data_violation = _data_violation(android.get("data"), "message.android.data")
    if data_violation is not None:
        return data_violation
    notification = android.get("notification")
    if isinstance(notification, dict):
        count = notification.get("notification_count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
            return "message.android.notification.notification_count", (
                "Invalid value at 'message.android.notification.notification_count' "
                f"(TYPE_INT32), {json.dumps(count)}"
            )
    return None
