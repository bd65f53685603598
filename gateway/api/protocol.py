"""aiohttp's connection protocol, answering what it refuses on its own as problem+json.

aiohttp's HTTP parser refuses some requests before any middleware runs: a request line or a
header longer than it reads, a method it does not know (``BREW``), a malformed request line, a
``Content-Encoding`` it cannot decode (``br``, ``zstd``). Its ``RequestHandler.handle_error``
answers those in text/plain and quotes the offending bytes back (a whole 8 KiB header, say).
:class:`ProblemRequestHandler` answers them as problem+json with a fixed detail that repeats
nothing the client sent, and logs no more than the kind of error.

aiohttp has no public hook for this. These internals are relied on, and pinned by
``tests/api/test_protocol_errors.py``:

- ``RequestHandler.handle_error(request, status, exc, message)`` builds the response for a
  parser error (through ``RequestHandler._make_error_handler``) and for an exception that
  escaped every middleware;
- ``web.Server.__call__`` is the per-connection protocol factory, building
  ``RequestHandler(self, loop=self._loop, **self._kwargs)``;
- ``web.AppRunner._make_server`` builds that ``web.Server`` for the application;
- ``RequestHandler.log_exception`` is how the handler logs what it caught while draining a body
  it had already answered.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    ContentEncodingError,
    HttpProcessingError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.api.problems import problem_response
from gateway.api.routing import unsupported_encoding
from gateway.errors import BadRequest, GatewayError

log = logging.getLogger(__name__)


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, rendering its own error answers as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # aiohttp's text, which may quote the request: never sent
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # as aiohttp does: part of a response is out, so the connection can only be dropped
            raise ConnectionError("a response was partly sent; cannot send an error after it")
        error = self.error_for(status, exc)
        if error.status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            # malformed requests are what port scanners send all day: not worth a warning
            log.debug("refused a malformed request from %s: %s", request.remote, error.code)
        response = problem_response(error)
        response.force_close()
        return response

    def error_for(self, status: int, exc: BaseException | None) -> GatewayError:
        """The problem to answer for aiohttp's ``status`` and the exception behind it."""
        if isinstance(exc, ContentEncodingError):
            return unsupported_encoding()
        if isinstance(exc, LineTooLong):
            return BadRequest(
                f"the request line or a header is longer than {self.max_field_size} bytes",
                code="line_too_long",
            )
        if isinstance(exc, BadHttpMethod):
            return BadRequest("the request method is not one HTTP defines", code="unknown_method")
        if isinstance(exc, HttpProcessingError) or status < 500:
            return BadRequest("the request is not well-formed HTTP/1.1")
        error = GatewayError("the gateway failed to handle this request")
        error.status = status
        return error

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # after answering, aiohttp drains a body the handler left unread; one that is broken
        # (not the gzip it claims to be, cut short) raises again there, after its 400 went out
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            log.debug("dropped the rest of a broken request body")
            return
        super().log_exception(*args, **kwargs)


class ProblemServer(web.Server):
    """aiohttp's low-level server, with a :class:`ProblemRequestHandler` per connection."""

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parser errors as problem+json: what
    ``pushgate serve`` and the API tests run the application on."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds the Server inside Application._make_handler with no way to pick its
        # class; only the protocol factory differs, so keep all it configured
        server.__class__ = ProblemServer
        return server
