"""What :mod:`gateway.providers.apns.transport` relies on inside aioapns 4.0 and h2, pinned.

The transport subclasses aioapns's connection pool and TLS protocol to fix their defects, so it
depends on names aioapns does not promise to keep. Each test here states one of them; an
aioapns or h2 upgrade that moves one fails here, with the name, before it fails in production.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl

import h2.utilities
from aioapns.connection import (
    APNsBaseConnectionPool,
    APNsTLSClientProtocol,
    AuthorizationHeaderProvider,
    ChannelPool,
)
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectError
from hpack import NeverIndexedHeaderTuple

from gateway.providers.apns import build_apns_request
from gateway.providers.apns.transport import ApnsConnectionPool, HardenedConnection
from gateway.providers.base import AppProfile
from tests.providers.apns_fixtures import TOPIC, make_message

PLAIN_APP = AppProfile(id="shop")


async def test_the_pool_takes_topic_and_max_connections_and_keeps_a_connection_list() -> None:
    # (built inside a running loop: aioapns reads the current loop in its constructor)
    parameters = inspect.signature(APNsBaseConnectionPool.__init__).parameters
    assert {"topic", "max_connections"} <= set(parameters)
    pool = APNsBaseConnectionPool(topic=TOPIC, max_connections=2)
    assert pool.connections == [] and pool.max_connections == 2
    # acquire() reuses a connection that is not busy, else calls create_connection()
    assert "create_connection" in inspect.getsource(APNsBaseConnectionPool.acquire)
    assert "is_busy" in inspect.getsource(APNsBaseConnectionPool.acquire)


def test_the_protocol_takes_topic_loop_callback_and_auth_provider() -> None:
    parameters = list(inspect.signature(APNsTLSClientProtocol.__init__).parameters)
    assert parameters[:5] == ["self", "apns_topic", "loop", "on_connection_lost", "auth_provider"]


async def test_the_protocol_keeps_the_attributes_the_connection_uses() -> None:
    protocol = APNsTLSClientProtocol(TOPIC, asyncio.get_running_loop(), None, None)
    for name in (
        "conn",
        "free_channels",
        "requests",
        "request_streams",
        "request_statuses",
        "inactivity_timer",
        "auth_provider",
        "apns_topic",
        "loop",
    ):
        assert hasattr(protocol, name), name
    assert isinstance(protocol.free_channels, ChannelPool)
    assert (protocol.requests, protocol.request_streams, protocol.request_statuses) == ({}, {}, {})


async def test_the_channel_pool_hands_out_odd_stream_ids_and_can_be_resized_and_destroyed() -> None:
    channels = ChannelPool(1)
    assert await channels.acquire() == 1
    assert channels.is_busy
    channels.bound = 2  # SETTINGS_MAX_CONCURRENT_STREAMS from the server
    assert await channels.acquire() == 3
    channels.release()
    channels.destroy(ConnectionClosed("gone"))


def test_the_exceptions_the_provider_classifies_exist() -> None:
    assert issubclass(ConnectionClosed, Exception)
    assert issubclass(ApnsConnectError, Exception)
    assert callable(AuthorizationHeaderProvider.get_header)


class _StaticBearer(AuthorizationHeaderProvider):
    def get_header(self) -> str:
        return "bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"


async def test_request_headers_are_what_h2_would_normalise_and_validate_them_to() -> None:
    """The connection turns off h2's outbound normalisation and validation (a tenth of a
    send's CPU): its header list, with every optional header, must come out of both unchanged,
    the credential never indexed."""
    authority = "api.push.apple.com"
    pool = ApnsConnectionPool(
        topic=TOPIC,
        host="127.0.0.1",
        port=443,
        authority=authority,
        ssl_context=ssl.create_default_context(),
        auth_provider=None,
        max_connections=1,
    )
    connection = HardenedConnection(
        f" {TOPIC}\t", authority, asyncio.get_running_loop(), _StaticBearer(), pool
    )
    message = make_message(collapse_key=" order-42 ")
    request = build_apns_request(message, PLAIN_APP)
    headers = h2.utilities.utf8_encode_headers(connection._headers(request))
    flags = h2.utilities.HeaderValidationFlags(
        is_client=True, is_trailer=False, is_response_header=False, is_push_promise=False
    )

    normalized = h2.utilities.normalize_outbound_headers(headers, flags)
    validated = list(h2.utilities.validate_outbound_headers(normalized, flags))

    assert validated == headers
    assert [type(header) for header in validated] == [type(header) for header in headers]
    sent = dict(headers)
    assert sent[b":path"] == f"/3/device/{message.token}".encode()
    assert (sent[b"apns-topic"], sent[b"apns-collapse-id"]) == (TOPIC.encode(), b"order-42")
    assert isinstance(headers[-1], NeverIndexedHeaderTuple)
    assert headers[-1][0] == b"authorization"
