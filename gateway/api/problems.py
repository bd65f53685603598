"""The one place errors become HTTP answers: every failure is RFC 9457
``application/problem+json``, so a caller parses one error shape whatever went wrong.

Services raise :class:`gateway.errors.GatewayError`; aiohttp raises its own ``HTTPException``
for what never reaches a handler (unknown path, wrong method, body too large). Both are
rendered here, and anything else becomes a 500 that says nothing about the internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.api.keys import SERVICES
from gateway.errors import GatewayError, Unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# When a caller should try again while the database is away: long enough not to hammer it,
# short enough that a restart or a failover is over.
RETRY_AFTER_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def problem_response(error: GatewayError, *, headers: dict[str, str] | None = None) -> web.Response:
    """``error`` as a problem+json response."""
    headers = dict(headers or {})
    if isinstance(error, Unavailable) and error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return web.Response(
        status=error.status,
        text=json.dumps(error.problem(), separators=(",", ":")),  # compact, as every answer
        content_type=PROBLEM_JSON,
        headers=headers or None,
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> GatewayError:
    error = GatewayError(exc.text or exc.reason)
    error.status = exc.status
    error.code = _HTTP_CODES.get(exc.status, "http_error")
    error.title = exc.reason
    if exc.status == 413:
        error.detail = "request body is larger than server.max_body_bytes"
    elif exc.status == 404:
        error.detail = f"no endpoint at {request.method} {request.path}"
    elif exc.status == 405:
        error.detail = f"{request.method} is not allowed on {request.path}"
    return error


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into problem+json, so callers parse one error shape."""
    try:
        return await handler(request)
    except GatewayError as error:
        return problem_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(_from_http_exception(request, exc), headers=allow)
    except Exception as error:
        reason = request.app[SERVICES].note_storage_failure(error)
        if reason is not None:
            log.warning("answering 503 to %s %s: %s", request.method, request.path, reason)
            return problem_response(
                Unavailable(f"{reason}; retry shortly", retry_after=RETRY_AFTER_SECONDS)
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(GatewayError("the gateway failed to handle this request"))
