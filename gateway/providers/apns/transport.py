"""HTTP/2 connections to APNs on aioapns 4.0, with its known defects guarded.

This is the only module that touches aioapns internals (its connection pool, TLS protocol and
stream-slot semaphore); ``tests/providers/test_apns_internals.py`` pins what it relies on, so an
aioapns upgrade that moves them fails there first. The request/response path on each
connection is ours (:class:`HardenedConnection`), because aioapns 4.0 has these defects, each
answered where the comment ``upstream defect`` names it:

1. It never acknowledges received DATA, so after ~64 KiB of error bodies the HTTP/2 connection
   window is exhausted and every later error response stalls forever.
2. It records ``stream id -> apns-id`` for every request and removes the entry only for errors, so
   a long-lived connection grows by one entry per successful send.
3. It matches responses by the ``apns-id`` header: a response without one (or a duplicated
   apns-id) leaves the send waiting forever.
4. ``RST_STREAM`` is logged as an unknown event: the send waits forever and its stream slot leaks.
5. An error status with an empty or non-JSON body never resolves (empty) or raises inside
   ``data_received`` and tears down the whole connection (non-JSON); a body split over two DATA
   frames is parsed half-way.
6. A cancelled send leaves its future behind; the late response (or the connection closing) then
   calls ``set_result`` on a cancelled future, which raises inside the protocol and kills the
   connection for every other request on it. There is no per-send deadline at all.
7. ``GOAWAY`` closes the transport without telling the caller which streams the server never
   processed, so those cannot be resent safely.
8. A burst of sends larger than the server's flow-control window raises ``FlowControlError``
   after the headers went out, leaving a half-open stream, and the pool then sleeps a second.
9. Each new connection signs a new provider JWT; Apple refuses tokens refreshed more often than
   every 20 minutes (``TooManyProviderTokenUpdates``), so one JWT is shared by all connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import jwt
from aioapns.connection import (
    APNsBaseConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
)
from aioapns.exceptions import ConnectionClosed
from hpack import HeaderTuple, NeverIndexedHeaderTuple

from gateway.providers.apns.payload import ApnsRequest

log = logging.getLogger(__name__)

# -- one connection --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApnsResponse:
    """What APNs answered on one stream."""

    status: int
    apns_id: str | None
    reason: str | None = None
    timestamp_ms: int | None = None
    retry_after: str | None = None


class NotSentError(Exception):
    """The server never processed the request (refused stream, GOAWAY beyond it, connection
    gone before the headers left): safe to send again on another connection."""


class StreamResetError(Exception):
    def __init__(self, error_code: int) -> None:
        super().__init__(f"stream reset by server (error code {error_code})")


class MalformedResponseError(Exception):
    pass


@dataclass(slots=True)
class _PendingStream:
    future: asyncio.Future[ApnsResponse]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class ProviderTokenHeader(AuthorizationHeaderProvider):
    """One provider JWT for every connection of a pool, refreshed well inside Apple's hour.

    Answers upstream defect 9: aioapns signs a new JWT per connection.
    """

    TOKEN_TTL_SECONDS = 40 * 60

    def __init__(self, key: str, key_id: str, team_id: str) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._issued_at = 0.0
        self._header = ""

    def get_header(self) -> str:
        now = time.time()
        if not self._header or now - self._issued_at > self.TOKEN_TTL_SECONDS:
            self._issued_at = now
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._header = f"bearer {token}"
        return self._header


# What h2's outbound normalisation strips from both ends of a header value (bytes.strip)
_HEADER_WHITESPACE = " \t\n\r\x0b\x0c"


class _LiteralEncoder(hpack.Encoder):
    """HPACK without Huffman coding of literal values.

    hpack's Huffman coder is pure Python and was a third of the CPU of a send. What it saves
    is about 75 bytes of a request's ~340-byte header block (the token, the apns-id and the
    provider JWT, which as a credential is never indexed); the headers every request repeats
    go as table indexes either way. RFC 7541 §5.2 makes plain literals part of every decoder,
    Apple's included.
    """

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class HardenedConnection(APNsTLSClientProtocol):
    """One HTTP/2 connection to APNs; every send on it ends with a response or an exception.

    Pending requests are keyed by stream id, not by ``apns-id`` (upstream defects 2, 3), and
    each stream releases its slot exactly once, whichever way it ends.
    """

    MAX_ERROR_BODY_BYTES = 64 * 1024
    INACTIVITY_TIME = 60
    MAX_UNFLUSHED_REQUESTS = 8  # framed requests held back for one write (see _flush_soon)

    def __init__(
        self,
        topic: str,
        authority: str,
        loop: asyncio.AbstractEventLoop,
        auth_provider: AuthorizationHeaderProvider | None,
        pool: ApnsConnectionPool,
    ) -> None:
        super().__init__(topic.strip(_HEADER_WHITESPACE), loop, None, auth_provider)
        self._authority = authority
        self._pool = pool
        # _headers builds each request's header list already in the form h2's outbound
        # normalisation gives it, and valid (tests/providers pin both with h2's own functions);
        # running both again on every send cost some 15 us of a send's ~150.
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=True,
                normalize_outbound_headers=False,
                validate_outbound_headers=False,
            )
        )
        self.conn.encoder = _LiteralEncoder()
        self._streams: dict[int, _PendingStream] = {}
        self._settings_received = asyncio.Event()
        self._window_opened = asyncio.Event()
        self._closing = False
        self._flush_scheduled = False
        self._unflushed_requests = 0
        self._last_activity = loop.time()
        self.lost: asyncio.Future[None] = loop.create_future()

    @property
    def pending_streams(self) -> int:
        return len(self._streams)

    # aioapns's own per-request tables must stay empty; tests assert it.
    @property
    def upstream_tables_size(self) -> int:
        return len(self.requests) + len(self.request_streams) + len(self.request_statuses)

    async def send_request(self, request: ApnsRequest) -> ApnsResponse:
        if self._closing:
            raise NotSentError("connection is closing")
        # aioapns assumes 1000 concurrent streams until the server says otherwise; sending
        # before the server's SETTINGS can exceed SETTINGS_MAX_CONCURRENT_STREAMS.
        await self._settings_received.wait()
        if self._closing:
            raise NotSentError("connection closed before the server's SETTINGS")
        try:
            stream_id = await self.free_channels.acquire()
        except ConnectionClosed as exc:
            raise NotSentError("connection closed while waiting for a stream") from exc
        except h2.exceptions.NoAvailableStreamIDError as exc:
            self.close()
            raise NotSentError("stream ids exhausted") from exc
        if self._closing:
            self.free_channels.release()
            raise NotSentError("connection is closing")
        pending = _PendingStream(self.loop.create_future())
        self._streams[stream_id] = pending
        try:
            try:
                self.conn.send_headers(stream_id, self._headers(request))
            except h2.exceptions.ProtocolError as exc:
                raise NotSentError(str(exc)) from exc
            await self._send_body(stream_id, request.body)
            return await pending.future
        finally:
            # Still registered: the caller was cancelled (deadline) or sending failed. Reset the
            # stream so the server forgets it and free the slot; the late answer is ignored.
            # Upstream defect 6: aioapns leaves the future for the response to trip over.
            if self._streams.pop(stream_id, None) is not None:
                self._reset_stream(stream_id)
                self.free_channels.release()
            if pending.future.done() and not pending.future.cancelled():
                pending.future.exception()  # retrieved: no "never retrieved" noise

    def _headers(self, request: ApnsRequest) -> list[tuple[str, str] | HeaderTuple]:
        headers: list[tuple[str, str] | HeaderTuple] = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self._authority),
            # Unique to each request: kept out of the HPACK table, where they would only evict
            # the headers every request repeats (topic, push type) and make encoding slower.
            NeverIndexedHeaderTuple(
                ":path", f"/3/device/{request.token}".strip(_HEADER_WHITESPACE)
            ),
            NeverIndexedHeaderTuple("apns-id", request.apns_id),
            ("apns-topic", self.apns_topic),
            ("apns-push-type", request.push_type),
            ("apns-priority", str(request.priority)),
            ("apns-expiration", str(request.expiration)),
        ]
        if request.collapse_id is not None:
            headers.append(("apns-collapse-id", request.collapse_id.strip(_HEADER_WHITESPACE)))
        if self.auth_provider is not None:
            # a credential stays out of the compression context (h2 does the same for it)
            headers.append(
                NeverIndexedHeaderTuple("authorization", self.auth_provider.get_header())
            )
        return headers

    async def _send_body(self, stream_id: int, body: bytes) -> None:
        """Send within the server's flow-control windows, waiting for WINDOW_UPDATE when they
        are full. Upstream defect 8: aioapns raises FlowControlError with the stream half-open."""
        remaining = memoryview(body)
        while True:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0 and remaining:
                self.flush()
                self._window_opened.clear()
                await self._window_opened.wait()
                if stream_id not in self._streams:
                    return  # the stream failed meanwhile; its future says why
                continue
            chunk, remaining = remaining[:window], remaining[window:]
            self.conn.send_data(stream_id, bytes(chunk), end_stream=not remaining)
            if not remaining:
                break
        self._flush_soon()

    def _reset_stream(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.H2Error):
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.warning("APNs connection protocol error, closing it: %s", exc)
            self._fail_all(ConnectionClosed(f"protocol error: {exc}"))
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                pending = self._streams.get(event.stream_id)
                if pending is not None:
                    pending.headers = {
                        bytes(name).decode("latin-1"): bytes(value).decode("latin-1")
                        for name, value in event.headers
                    }
            elif isinstance(event, h2.events.DataReceived):
                # Upstream defect 1: give the flow-control window back, or error bodies stall
                # the connection once 64 KiB have arrived.
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
                pending = self._streams.get(event.stream_id)
                if pending is not None and len(pending.body) < self.MAX_ERROR_BODY_BYTES:
                    pending.body += event.data or b""
            elif isinstance(event, h2.events.StreamEnded):
                self._complete(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                # Upstream defect 4: aioapns ignores RST_STREAM and the send hangs.
                refused = event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                self._fail(
                    event.stream_id,
                    NotSentError("stream refused")
                    if refused
                    else StreamResetError(event.error_code),
                )
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                changed = event.changed_settings.get(
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                )
                if changed is not None:
                    self.free_channels.bound = changed.new_value
                self._settings_received.set()
                self._window_opened.set()
            elif isinstance(event, h2.events.WindowUpdated):
                self._window_opened.set()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._goaway_received(event)
        self.flush()

    def _complete(self, stream_id: int) -> None:
        pending = self._streams.pop(stream_id, None)
        if pending is None:
            return  # a stream we reset after its deadline: nobody is waiting
        self.free_channels.release()
        status = pending.headers.get(":status", "")
        if not status.isdigit():
            pending.future.set_exception(MalformedResponseError("response without :status"))
        else:
            reason, timestamp = _parse_error_body(bytes(pending.body))
            # Upstream defect 5: the body is read whole at the end of the stream, and a
            # missing or unreadable one is simply "no reason".
            pending.future.set_result(
                ApnsResponse(
                    status=int(status),
                    apns_id=pending.headers.get("apns-id"),
                    reason=reason,
                    timestamp_ms=timestamp,
                    retry_after=pending.headers.get("retry-after"),
                )
            )
        if self._closing and not self._streams:
            self.close()

    def _fail(self, stream_id: int, exc: Exception) -> None:
        pending = self._streams.pop(stream_id, None)
        if pending is None:
            return
        self.free_channels.release()
        if not pending.future.done():
            pending.future.set_exception(exc)
        self._window_opened.set()

    def _fail_all(self, exc: Exception) -> None:
        for stream_id in list(self._streams):
            self._fail(stream_id, exc)

    def _goaway_received(self, event: h2.events.ConnectionTerminated) -> None:
        """Upstream defect 7: streams after ``last_stream_id`` were never processed and are
        handed back for resending; earlier ones may still be answered."""
        log.info(
            "APNs sent GOAWAY (code %s, last stream %s, %r)",
            event.error_code,
            event.last_stream_id,
            event.additional_data,
        )
        self._closing = True
        self._pool.forget_connection(self)
        last_stream_id = event.last_stream_id or 0
        for stream_id in [sid for sid in self._streams if sid > last_stream_id]:
            self._fail(stream_id, NotSentError("GOAWAY before this stream was processed"))
        if not self._streams:
            self.close()

    def flush(self) -> None:
        self._unflushed_requests = 0
        if self.transport is None or self.transport.is_closing():
            return
        if not self._closing:
            self.refresh_inactivity_timer()
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def _flush_soon(self) -> None:
        """Write every MAX_UNFLUSHED_REQUESTS framed requests, and what is left at the end of
        the loop iteration. A burst goes out in a few TLS records and system calls instead of
        one each, and the server starts on its first requests while the rest are framed (one
        write for the whole burst left it idle until the last one was)."""
        self._unflushed_requests += 1
        if self._unflushed_requests >= self.MAX_UNFLUSHED_REQUESTS:
            self.flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def refresh_inactivity_timer(self) -> None:
        # Called on every read and write: note the time, and keep one timer that checks it when
        # it fires, instead of cancelling and scheduling a timer each time.
        self._last_activity = self.loop.time()
        if self.inactivity_timer is None:
            self.inactivity_timer = self.loop.call_later(self.INACTIVITY_TIME, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self.inactivity_timer = None
        remaining = self._last_activity + self.INACTIVITY_TIME - self.loop.time()
        if remaining > 0 or self._streams:
            delay = remaining if remaining > 0 else self.INACTIVITY_TIME
            self.inactivity_timer = self.loop.call_later(delay, self._close_if_idle)
        else:
            self.close()

    def close(self) -> None:
        """Stop taking sends, fail the pending ones, say GOAWAY and close the transport."""
        self._closing = True
        self._pool.forget_connection(self)
        if self.inactivity_timer:
            self.inactivity_timer.cancel()
            self.inactivity_timer = None
        closed = ConnectionClosed("connection closed")
        self._fail_all(closed)
        self.free_channels.destroy(closed)
        self._settings_received.set()  # wake sends waiting for SETTINGS; they see _closing
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(h2.exceptions.H2Error):
                self.conn.close_connection()
                self.transport.write(self.conn.data_to_send())
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Replaces aioapns's, which calls set_exception on cancelled futures (defect 6).
        self._closing = True
        self._pool.forget_connection(self)
        if self.inactivity_timer:
            self.inactivity_timer.cancel()
            self.inactivity_timer = None
        lost = ConnectionClosed(f"connection lost: {exc}" if exc else "connection lost")
        self._fail_all(lost)
        self.free_channels.destroy(lost)
        self._settings_received.set()
        if not self.lost.done():
            self.lost.set_result(None)


def _parse_error_body(body: bytes) -> tuple[str | None, int | None]:
    if not body:
        return None, None
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    reason = document.get("reason")
    timestamp = document.get("timestamp")
    return (
        reason if isinstance(reason, str) and reason else None,
        timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
    )


# -- one pool per app and environment ----------------------------------------------------------


class ApnsConnectionPool(APNsBaseConnectionPool):
    """aioapns's pool (connection reuse and growth up to ``max_connections``) making
    :class:`HardenedConnection` connections to the configured endpoint."""

    MAX_SEND_ATTEMPTS = 3  # only for requests the server provably never processed

    def __init__(
        self,
        *,
        topic: str,
        host: str,
        port: int,
        authority: str,
        ssl_context: ssl.SSLContext,
        auth_provider: AuthorizationHeaderProvider | None,
        max_connections: int,
    ) -> None:
        super().__init__(topic=topic, max_connections=max_connections)
        self.ssl_context = ssl_context
        self._topic = topic
        self._host = host
        self._port = port
        self._authority = authority
        self._auth_provider = auth_provider

    async def create_connection(self) -> HardenedConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: HardenedConnection(
                self._topic, self._authority, loop, self._auth_provider, self
            ),
            host=self._host,
            port=self._port,
            ssl=self.ssl_context,
        )
        return connection

    def forget_connection(self, connection: HardenedConnection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)

    async def send(self, request: ApnsRequest) -> ApnsResponse:
        """Send on a free connection; resend (same apns-id) only what was never processed."""
        for _ in range(self.MAX_SEND_ATTEMPTS):
            connection = await self.acquire()
            assert isinstance(connection, HardenedConnection)
            try:
                return await connection.send_request(request)
            except NotSentError as exc:
                log.debug("APNs request %s not processed (%s), resending", request.apns_id, exc)
        raise ConnectionClosed("request refused on every attempt")

    async def aclose(self, grace_seconds: float) -> None:
        """Close every connection and wait (at most ``grace_seconds``) until they are gone."""
        connections = [c for c in self.connections if isinstance(c, HardenedConnection)]
        for connection in connections:
            connection.close()
        for connection in connections:
            try:
                async with asyncio.timeout(grace_seconds):
                    await asyncio.shield(connection.lost)
            except TimeoutError:
                if connection.transport is not None:
                    connection.transport.abort()
