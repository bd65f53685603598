"""An in-process APNs: HTTP/2 over TLS on loopback, framed the way Apple frames it.

It exists so that the real client (aioapns, through :mod:`gateway.providers.apns`) is exercised
over real sockets in tests, benchmarks and sandbox mode. It is raw ``h2`` on an asyncio server,
not an ASGI server: aioapns reads one ``HEADERS`` frame and, for errors, one JSON ``DATA`` frame,
and expects exactly Apple's framing.

What it does, like Apple (https://developer.apple.com/documentation/usernotifications/
handling-notification-responses-from-apns):

- TLS with a CA generated at start (:attr:`ApnsSimulator.ca_file`), ALPN ``h2``, and an initial
  ``SETTINGS`` frame advertising ``SETTINGS_MAX_CONCURRENT_STREAMS``.
- Provider authentication: an ES256 JWT in ``authorization: bearer ...`` whose ``kid`` names a
  key the simulator knows and whose ``iss`` is that key's team; tokens older than an hour are
  ``ExpiredProviderToken``. Or certificate authentication: a client certificate signed by the
  simulator's CA (:meth:`ApnsSimulator.issue_client_certificate`), in which case no JWT is needed.
- ``200`` with an ``apns-id`` header and no body; errors as ``{"reason": ...}`` with the
  ``apns-id`` header, plus ``timestamp`` (milliseconds) for ``410``, and ``retry-after`` when
  scripted.
- Header and payload checks with Apple's reasons (``BadDeviceToken``, ``BadPriority``,
  ``PayloadTooLarge`` ...).

Scripting (:meth:`ApnsSimulator.script`): rules matched per token (or any token), for a number of
requests or a time window, answering with any status/reason, latency, a raw (non-JSON, empty or
large) body, no ``apns-id``, or a fault: connection reset, ``GOAWAY``, ``RST_STREAM``, or no
response at all. Every request is recorded in :attr:`ApnsSimulator.requests`.

Use::

    async with ApnsSimulator() as sim:
        config = sim.apns_config(topic="com.example.app")  # endpoint, ca_file and a key it trusts
        sim.unregister(token, since=datetime.now(UTC))
        ...
        assert sim.requests[0].payload["aps"]["alert"]["title"] == "Hi"

Sandbox mode (the gateway with ``[sandbox] enabled`` and an app without APNs credentials):
start one simulator for the process and give the app ``sim.apns_config(app_topic)``; it carries a
key pair the simulator generated and trusts. ``ApnsSimulator(accept_any_provider_key=True)``
also accepts any well-formed ES256 JWT whose key id it does not know, for a gateway configured
with its own key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.simulators.tls import CertificateAuthority, server_ssl_context

log = logging.getLogger(__name__)

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.development.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
PROVIDER_TOKEN_MAX_AGE_SECONDS = 3600
PUSH_TYPES = frozenset(
    {"alert", "background", "voip", "complication", "fileprovider", "mdm", "liveactivity"}
)
_TOKEN_PATH = re.compile(r"^/3/device/([^/?]*)$")
_HEX_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")

Fault = Literal["reset_connection", "goaway", "rst_stream", "no_response"]
AuthMode = Literal["token", "certificate", "none"]
TokenMatch = str | Callable[[str], bool] | None


@dataclass(frozen=True, slots=True)
class ApnsReply:
    """How the simulator answers one request.

    ``status``/``reason`` frame a normal answer; ``timestamp`` is sent (in ms) with ``410``;
    ``body`` replaces the JSON error body byte for byte (``b""`` for no body, non-JSON, or a
    large body to exercise flow control); ``fault`` replaces the answer with a transport event.
    """

    status: int = 200
    reason: str | None = None
    timestamp: datetime | None = None
    retry_after: int | str | None = None  # a str is sent verbatim (an HTTP date, junk...)
    body: bytes | None = None
    omit_apns_id: bool = False
    delay: float = 0.0
    fault: Fault | None = None


OK = ApnsReply()


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator received it, and what it answered (``status`` is ``None``
    when it answered with a fault)."""

    token: str
    headers: dict[str, str]
    payload: dict[str, Any] | None
    body: bytes
    auth: AuthMode
    environment: Literal["production", "sandbox"]
    connection_id: int
    stream_id: int
    status: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class ProviderKey:
    """A provider signing key (the ``.p8`` Apple hands out) that the simulator trusts."""

    key_id: str
    team_id: str
    private_key_pem: str
    public_key: ec.EllipticCurvePublicKey

    @classmethod
    def generate(cls, key_id: str = "SIMKEY0001", team_id: str = "SIMTEAM001") -> ProviderKey:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return cls(key_id, team_id, pem, key.public_key())


@dataclass(slots=True)
class _Rule:
    reply: ApnsReply
    match: TokenMatch
    remaining: int | None
    until: float | None

    def matches(self, token: str, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.until is not None and now >= self.until:
            return False
        if self.match is None:
            return True
        if isinstance(self.match, str):
            return self.match == token
        return self.match(token)


@dataclass(slots=True)
class _IncomingStream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class ApnsSimulator:
    """An APNs server on ``127.0.0.1`` and an ephemeral port; see the module docstring."""

    def __init__(
        self,
        *,
        max_concurrent_streams: int = 1000,
        accept_any_provider_key: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.accept_any_provider_key = accept_any_provider_key
        self.clock = clock
        self.provider_key = ProviderKey.generate()
        self._provider_keys: dict[str, ProviderKey] = {self.provider_key.key_id: self.provider_key}
        self.requests: list[RecordedRequest] = []
        # tokens whose request was answered 200, in the order the answers went out: what a
        # client could have recorded as delivered at any moment (crash-safety tests)
        self.answered_tokens: list[str] = []
        self.connections_opened = 0
        self.max_streams_in_flight = 0
        self.streams_reset_by_clients = 0
        self._rules: list[_Rule] = []
        # Verified JWT -> its iat: Apple, too, checks a token once and then only its age.
        self._verified_tokens: dict[str, float] = {}
        self._request_recorded = asyncio.Event()
        self._connections: set[_ServerConnection] = set()
        self._server: asyncio.Server | None = None
        self._folder: Path | None = None
        self._ca: CertificateAuthority | None = None
        self._port: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Generate the CA and certificates and start listening."""
        self._folder = Path(tempfile.mkdtemp(prefix="pushgate-apns-sim-"))
        self._ca = CertificateAuthority.generate("pushgate APNs simulator CA")
        self._ca.write_pem(self._folder / "ca.pem")
        key_file = self._folder / "provider-key.p8"
        key_file.write_text(self.provider_key.private_key_pem, encoding="ascii")
        key_file.chmod(0o600)
        context = server_ssl_context(
            self._ca.issue_server_certificate(), self._folder, alpn=("h2",), client_ca=self._ca
        )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerConnection(self), host="127.0.0.1", port=0, ssl=context
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("APNs simulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        """Stop listening, drop every connection, and delete the generated files."""
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.abort()
            await self._server.wait_closed()
            self._server = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def __aenter__(self) -> ApnsSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- what clients need --------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``https://127.0.0.1:<port>``, for ``[apps.apns] endpoint``."""
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) clients must trust, for ``[apps.apns] ca_file``."""
        return self._started_folder / "ca.pem"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    @property
    def key_file(self) -> Path:
        """The ``.p8`` of :attr:`provider_key`, which the simulator trusts."""
        return self._started_folder / "provider-key.p8"

    def apns_config(self, topic: str, *, certificate_auth: bool = False) -> dict[str, Any]:
        """An ``[apps.apns]`` section (as the config file would hold it) that delivers to this
        simulator: token auth with :attr:`provider_key` by default, or a client certificate
        with ``certificate_auth``."""
        if certificate_auth:
            return {
                "topic": topic,
                "cert_file": self.issue_client_certificate(topic),
                "endpoint": self.endpoint,
                "ca_file": self.ca_file,
            }
        return {
            "topic": topic,
            "team_id": self.provider_key.team_id,
            "key_id": self.provider_key.key_id,
            "key_file": self.key_file,
            "endpoint": self.endpoint,
            "ca_file": self.ca_file,
        }

    def issue_client_certificate(self, topic: str, *, name: str | None = None) -> Path:
        """Write a provider certificate for ``topic`` (certificate and key in one PEM, as
        ``[apps.apns] cert_file`` expects) signed by the simulator's CA; return its path."""
        assert self._ca is not None, "the simulator is not started"
        issued = self._ca.issue_client_certificate(f"Apple Push Services: {topic}", topic)
        return issued.write_bundle(self._started_folder / f"{name or topic}-client.pem")

    def trust_provider_key(self, key: ProviderKey) -> None:
        """Accept JWTs signed by ``key`` (besides :attr:`provider_key`)."""
        self._provider_keys[key.key_id] = key

    @property
    def _started_folder(self) -> Path:
        if self._folder is None:
            raise RuntimeError("the simulator is not started")
        return self._folder

    # -- scripting ----------------------------------------------------------------------------

    def script(
        self,
        reply: ApnsReply,
        *,
        token: TokenMatch = None,
        times: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Answer requests for ``token`` (a token, a predicate, or ``None`` for any) with
        ``reply``, for the next ``times`` matching requests and/or the next ``seconds``
        (unbounded when both are ``None``). Earlier rules win over later ones."""
        until = None if seconds is None else asyncio.get_running_loop().time() + seconds
        self._rules.append(_Rule(reply, token, times, until))

    def unregister(self, token: str, since: datetime) -> None:
        """From now on ``token`` gets ``410 Unregistered`` with ``timestamp`` = ``since``."""
        self.script(ApnsReply(410, "Unregistered", timestamp=since), token=token)

    async def wait_for_requests(self, count: int) -> None:
        """Return once at least ``count`` requests have been recorded."""
        while len(self.requests) < count:
            self._request_recorded.clear()
            await self._request_recorded.wait()

    def clear_script(self) -> None:
        self._rules.clear()

    def _scripted_reply(self, token: str) -> ApnsReply:
        now = asyncio.get_running_loop().time()
        for rule in self._rules:
            if rule.matches(token, now):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule.reply
        return OK

    # -- request handling ---------------------------------------------------------------------

    def _answer(self, headers: dict[str, str], body: bytes, auth_error: str | None) -> ApnsReply:
        """Apple's checks in Apple's order, then the script."""
        if auth_error is not None:
            return ApnsReply(403, auth_error)
        if headers.get(":method") != "POST":
            return ApnsReply(405, "MethodNotAllowed")
        path = _TOKEN_PATH.match(headers.get(":path", ""))
        if path is None:
            return ApnsReply(404, "BadPath")
        token = path.group(1)
        if not token:
            return ApnsReply(400, "MissingDeviceToken")
        if not _HEX_TOKEN.match(token):
            return ApnsReply(400, "BadDeviceToken")
        reason = _header_problem(headers)
        if reason is not None:
            return ApnsReply(400, reason)
        if not body:
            return ApnsReply(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD_BYTES:
            return ApnsReply(413, "PayloadTooLarge")
        if _json_object(body) is None:
            # Apple documents no reason for a body that is not a JSON object; this one is ours.
            return ApnsReply(400, "BadPayload")
        return self._scripted_reply(token)

    def _authenticate(
        self, headers: dict[str, str], has_client_certificate: bool
    ) -> tuple[AuthMode, str | None]:
        """Which auth mode the request used, and the 403 reason when it fails."""
        if has_client_certificate:
            return "certificate", None
        authorization = headers.get("authorization")
        if not authorization:
            return "none", "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "token", "InvalidProviderToken"
        issued_at = self._verified_tokens.get(token)
        if issued_at is None:
            issued_at, error = self._verify_provider_token(token)
            if error is not None:
                return "token", error
            self._verified_tokens[token] = issued_at
        if self.clock() - issued_at > PROVIDER_TOKEN_MAX_AGE_SECONDS:
            return "token", "ExpiredProviderToken"
        return "token", None

    def _verify_provider_token(self, token: str) -> tuple[float, str | None]:
        """Check signature, ``kid`` and ``iss``; return ``iat`` and the 403 reason if any."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return 0.0, "InvalidProviderToken"
        issued_at = unverified.get("iat")
        if header.get("alg") != "ES256" or not isinstance(issued_at, int | float):
            return 0.0, "InvalidProviderToken"
        key = self._provider_keys.get(str(header.get("kid")))
        if key is None:
            if not (self.accept_any_provider_key and header.get("kid") and unverified.get("iss")):
                return 0.0, "InvalidProviderToken"
            return float(issued_at), None
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return 0.0, "InvalidProviderToken"
        if claims["iss"] != key.team_id:
            return 0.0, "InvalidProviderToken"
        return float(issued_at), None


def _header_problem(headers: dict[str, str]) -> str | None:
    apns_id = headers.get("apns-id")
    if apns_id is not None:
        try:
            uuid.UUID(apns_id)
        except ValueError:
            return "BadMessageId"
    if "apns-topic" not in headers:
        return "MissingTopic"
    priority = headers.get("apns-priority")
    if priority is not None and priority not in {"1", "5", "10"}:
        return "BadPriority"
    push_type = headers.get("apns-push-type")
    if push_type is not None and push_type not in PUSH_TYPES:
        return "InvalidPushType"
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        return "BadExpirationDate"
    collapse_id = headers.get("apns-collapse-id")
    if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
        return "BadCollapseId"
    return None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class _ServerConnection(asyncio.Protocol):
    """One client connection: h2 events in, Apple-framed responses out."""

    _ids = 0

    def __init__(self, simulator: ApnsSimulator) -> None:
        _ServerConnection._ids += 1
        self.id = _ServerConnection._ids
        self.sim = simulator
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.transport: asyncio.Transport | None = None
        self.has_client_certificate = False
        self.streams: dict[int, _IncomingStream] = {}
        self.in_flight: set[int] = set()
        self.outbound: dict[int, bytearray] = {}
        self.timers: dict[int, asyncio.TimerHandle] = {}  # delayed answers, by stream
        self.tokens: dict[int, str] = {}  # the device token of each stream awaiting its answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.has_client_certificate = bool(transport.get_extra_info("peercert"))
        self.sim.connections_opened += 1
        self.sim._connections.add(self)
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.sim.max_concurrent_streams
            },
        )
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim._connections.discard(self)
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            log.warning("APNs simulator: protocol error from client", exc_info=True)
            self.flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None and event.headers is not None
                headers = {str(name): str(value) for name, value in event.headers}
                self.streams[event.stream_id] = _IncomingStream(headers)
                self.in_flight.add(event.stream_id)
                self.sim.max_streams_in_flight = max(
                    self.sim.max_streams_in_flight, len(self.in_flight)
                )
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, h2.events.StreamEnded):
                assert event.stream_id is not None
                self.request_complete(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                assert event.stream_id is not None
                self.sim.streams_reset_by_clients += 1
                self.forget(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                for stream_id in list(self.outbound):
                    self.pump(stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.flush()
                if self.transport is not None:
                    self.transport.close()
                return
        self.flush()

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        self.tokens.pop(stream_id, None)
        self.outbound.pop(stream_id, None)
        self.in_flight.discard(stream_id)

    def request_complete(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        headers, body = stream.headers, bytes(stream.body)
        auth, auth_error = self.sim._authenticate(headers, self.has_client_certificate)
        reply = self.sim._answer(headers, body, auth_error)
        path = _TOKEN_PATH.match(headers.get(":path", ""))
        host = headers.get("host") or headers.get(":authority", "")
        self.sim.requests.append(
            RecordedRequest(
                token=path.group(1) if path else "",
                headers=headers,
                payload=_json_object(body),
                body=body,
                auth=auth,
                environment="sandbox" if host.startswith(SANDBOX_HOST) else "production",
                connection_id=self.id,
                stream_id=stream_id,
                status=None if reply.fault else reply.status,
                reason=None if reply.fault else reply.reason,
            )
        )
        self.sim._request_recorded.set()
        self.tokens[stream_id] = path.group(1) if path else ""
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        if reply.delay > 0:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(reply.delay, self.delayed_respond, stream_id, reply, apns_id)
            self.timers[stream_id] = timer
        else:
            self.respond(stream_id, reply, apns_id)

    def delayed_respond(self, stream_id: int, reply: ApnsReply, apns_id: str) -> None:
        # a fired timer is forgotten here: keeping them all (a set pruned of the cancelled
        # ones) grew with every answer and made each one cost as much as all before it
        self.timers.pop(stream_id, None)
        if stream_id in self.in_flight:
            self.respond(stream_id, reply, apns_id)
            self.flush()

    def respond(self, stream_id: int, reply: ApnsReply, apns_id: str) -> None:
        try:
            self.frame_reply(stream_id, reply, apns_id)
        except h2.exceptions.StreamClosedError:
            self.forget(stream_id)  # the client reset it meanwhile (its deadline, say)

    def frame_reply(self, stream_id: int, reply: ApnsReply, apns_id: str) -> None:
        token = self.tokens.pop(stream_id, "")
        if reply.fault is not None:
            self.inject_fault(stream_id, reply.fault)
            return
        if reply.status == 200:
            self.sim.answered_tokens.append(token)
        headers = [(":status", str(reply.status))]
        if not reply.omit_apns_id:
            headers.append(("apns-id", apns_id))
        if reply.retry_after is not None:
            headers.append(("retry-after", str(reply.retry_after)))
        body = reply.body
        if body is None and reply.status != 200:
            error: dict[str, Any] = {"reason": reply.reason or ""}
            if reply.timestamp is not None:
                error["timestamp"] = int(reply.timestamp.timestamp() * 1000)
            body = json.dumps(error).encode()
        if not body:
            self.conn.send_headers(stream_id, headers, end_stream=True)
            self.in_flight.discard(stream_id)
            return
        headers.append(("content-type", "application/json"))
        headers.append(("content-length", str(len(body))))
        self.conn.send_headers(stream_id, headers)
        self.outbound[stream_id] = bytearray(body)
        self.pump(stream_id)

    def pump(self, stream_id: int) -> None:
        """Send as much of the stream's body as the client's flow-control windows allow; the
        rest waits for a WINDOW_UPDATE, as on a real server."""
        pending = self.outbound.get(stream_id)
        if pending is None:
            return
        try:
            while pending:
                size = min(
                    self.conn.local_flow_control_window(stream_id),
                    self.conn.max_outbound_frame_size,
                    len(pending),
                )
                if size <= 0:
                    return
                # END_STREAM rides on the last DATA frame, as Apple sends it.
                self.conn.send_data(
                    stream_id, bytes(pending[:size]), end_stream=size == len(pending)
                )
                del pending[:size]
        except h2.exceptions.StreamClosedError:
            pass
        self.outbound.pop(stream_id, None)
        self.in_flight.discard(stream_id)

    def inject_fault(self, stream_id: int, fault: Fault) -> None:
        if fault == "no_response":
            return
        self.in_flight.discard(stream_id)
        if fault == "rst_stream":
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif fault == "goaway":
            # Streams from this one on were not processed: a client may resend them elsewhere.
            self.conn.close_connection(
                error_code=h2.errors.ErrorCodes.NO_ERROR,
                additional_data=json.dumps({"reason": "Shutdown"}).encode(),
                last_stream_id=max(stream_id - 2, 0),
            )
            self.flush()
            if self.transport is not None:
                self.transport.close()
        elif fault == "reset_connection":
            with contextlib.suppress(OSError):
                self.abort()
