"""What aiohttp's HTTP parser refuses before any middleware runs is answered as problem+json
too, repeating nothing the client sent; and the aiohttp internals that relies on are pinned.

These requests cannot be made with an HTTP client (it would not send them), so they are written
to a socket by hand.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from aiohttp.web_protocol import RequestHandler
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.protocol import ProblemAppRunner, ProblemRequestHandler, ProblemServer
from gateway.runtime import Role
from gateway.server import serve
from tests.api.conftest import FULL_KEY, Client, assert_nothing_stored, make_settings
from tests.api.test_bad_input import NOTE

SECRET = "fcm:never-echo-this-token"


async def exchange(host: str, port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write ``request`` to a fresh connection; the status, headers and body of the answer
    (the server closes the connection after an error, which ends the read)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


async def assert_raw_problem(
    client: Client, request: bytes, status: int, code: str
) -> dict[str, Any]:
    server = client.server
    assert server.host is not None and server.port is not None
    got, headers, body = await exchange(server.host, server.port, request)
    assert got == status, body
    assert headers["Content-Type"].startswith("application/problem+json")
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["title"] and problem["detail"]
    return problem


def request_bytes(start_line: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [start_line, "Host: gateway", f"Authorization: Bearer {FULL_KEY}", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def test_an_over_long_header_is_refused_without_being_echoed(client: Client) -> None:
    request = request_bytes("GET /healthz HTTP/1.1", f"X-Token: {SECRET}{'s' * 9000}")
    problem = await assert_raw_problem(client, request, 400, "line_too_long")
    assert SECRET not in json.dumps(problem)


async def test_an_unknown_method_is_refused(client: Client) -> None:
    problem = await assert_raw_problem(
        client, request_bytes("BREW /v1/notifications HTTP/1.1"), 400, "unknown_method"
    )
    assert "BREW" not in problem["detail"]


@pytest.mark.parametrize(
    "start_line",
    [
        "GET /healthz HTTP/9.9x",
        "GET /healthz?" + SECRET + " HTT",
        "GET " + "/a" * 5000 + SECRET + " HTTP/1.1",
    ],
)
async def test_malformed_request_lines_are_refused(client: Client, start_line: str) -> None:
    problem = await assert_raw_problem(
        client, request_bytes(start_line), 400, problem_code(start_line)
    )
    assert SECRET not in json.dumps(problem)


def problem_code(start_line: str) -> str:
    return "line_too_long" if len(start_line) > 8190 else "bad_request"


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_encodings_aiohttp_cannot_decode_are_refused(
    client: Client, engine: AsyncEngine, encoding: str
) -> None:
    request = request_bytes(
        "POST /v1/notifications HTTP/1.1",
        "Content-Type: application/json",
        f"Content-Encoding: {encoding}",
        body=json.dumps(NOTE).encode(),
    )
    await assert_raw_problem(client, request, 415, "unsupported_encoding")
    await assert_nothing_stored(engine)


@pytest.mark.parametrize("key", ["a\x00b", "a\x01b", "a\x7fb"])
async def test_control_characters_in_an_idempotency_key_are_refused(
    client: Client, engine: AsyncEngine, key: str
) -> None:
    request = request_bytes(
        "POST /v1/notifications HTTP/1.1",
        "Content-Type: application/json",
        f"Idempotency-Key: {key}",
        body=json.dumps(NOTE).encode(),
    )
    server = client.server
    assert server.host is not None and server.port is not None
    status, headers, _ = await exchange(server.host, server.port, request)
    # the parser refuses NUL and most controls in a header value (400); what it lets through,
    # the key's own check refuses (422): either way nothing is stored
    assert status in (400, 422)
    assert headers["Content-Type"].startswith("application/problem+json")
    await assert_nothing_stored(engine)


async def test_pushgate_serve_answers_parser_errors_as_problems(tmp_path: Path) -> None:
    port = unused_port()
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}", server={"host": "127.0.0.1", "port": port}
    )
    listening = asyncio.Event()

    class WhenListening(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "listening" in record.getMessage():
                listening.set()

    watcher = WhenListening()
    logging.getLogger("gateway.server").addHandler(watcher)
    logging.getLogger("gateway.server").setLevel(logging.INFO)
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, Role.API, stop=stop))
    try:
        await asyncio.wait(
            [serving, asyncio.ensure_future(listening.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert listening.is_set(), serving.exception() if serving.done() else "not listening"
        status, headers, body = await exchange(
            "127.0.0.1", port, request_bytes("BREW /healthz HTTP/1.1")
        )
        assert status == 400
        assert headers["Content-Type"].startswith("application/problem+json")
        assert json.loads(body)["code"] == "unknown_method"
    finally:
        stop.set()
        await serving
        logging.getLogger("gateway.server").removeHandler(watcher)


async def test_the_aiohttp_internals_the_problem_runner_relies_on() -> None:
    """If this fails after an aiohttp upgrade, re-read ``aiohttp/web_protocol.py`` and
    ``aiohttp/web_server.py`` and adapt :mod:`gateway.api.protocol` before anything else."""
    # the hook: a parser error and an escaped exception are both answered by handle_error
    assert list(inspect.signature(RequestHandler.handle_error).parameters) == [
        "self",
        "request",
        "status",
        "exc",
        "message",
    ]
    assert "self.handle_error(" in inspect.getsource(RequestHandler._make_error_handler)
    assert "self.handle_error(request, 500, exc)" in inspect.getsource(
        RequestHandler._handle_request
    )
    # an answered request's broken body is drained and logged through log_exception
    assert 'self.log_exception("Unhandled exception", exc_info=exc)' in inspect.getsource(
        RequestHandler.start
    )
    # the protocol factory, and the attributes ProblemServer.__call__ reads
    assert "RequestHandler(self, loop=self._loop, **self._kwargs)" in inspect.getsource(
        web.Server.__call__
    )
    # AppRunner builds the Server in _make_server; the test server builds its runner in
    # _make_runner (tests.api.conftest.GatewayTestServer overrides it)
    assert inspect.iscoroutinefunction(web.AppRunner._make_server)
    assert inspect.iscoroutinefunction(TestServer._make_runner)

    runner = ProblemAppRunner(web.Application())
    await runner.setup()
    try:
        assert isinstance(runner.server, ProblemServer)
        handler = runner.server()
        assert isinstance(handler, ProblemRequestHandler)
        assert handler.max_field_size == 8190  # the figure the line_too_long detail names
    finally:
        await runner.cleanup()
