"""Request ids: one per HTTP request, named in its response and in every log line it causes.

The id is the caller's ``X-Request-Id`` when that is usable (1-128 visible ASCII characters,
so it is safe in a log line and a header), otherwise one made up here; an unusable one is
replaced rather than refused, since a tracing header must never fail a request. The response
carries the id in ``X-Request-Id`` either way, so a caller can always quote it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web

from gateway.api.routing import Handler
from gateway.logs import REQUEST_ID

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_LENGTH = 128
_USABLE = re.compile(rf"[!-~]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def request_id_from(header: str | None) -> str:
    """The caller's id when it is usable, else a new one (32 hex characters)."""
    if header is not None and _USABLE.fullmatch(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id for the time it is served (the log's context), and answer
    with it. Outermost, so every answer has it, errors included."""
    request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # what no inner middleware rendered (a redirect)
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        REQUEST_ID.reset(token)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    if log.isEnabledFor(logging.DEBUG):  # an access log, for `[logging] level = "debug"`
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        # the path as sent (percent-encoded): decoded, a forged id could carry a line break
        log.debug(
            "%s %s answered %d in %.1f ms",
            request.method,
            request.raw_path,
            response.status,
            duration_ms,
            extra={
                "event": "http.request",
                "request_id": request_id,
                "method": request.method,
                "path": request.raw_path,
                "status": response.status,
                "duration_ms": duration_ms,
            },
        )
    return response
