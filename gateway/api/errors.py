"""Errors the API answers with, rendered as RFC 9457 ``application/problem+json``.

GatewayError (status, code)
 ├── ValidationFailed      422 invalid_request   (errors: [{field, message}])
 │    ├── InvalidTimezone  422 invalid_timezone
 │    ├── InvalidToken     422 invalid_token
 │    └── UnknownApp       422 unknown_app
 ├── TierConflict          422 tier_conflict
 ├── PayloadTooLarge       413 payload_too_large
 ├── Unauthorized          401 unauthorized
 ├── Forbidden             403 tier_not_allowed | app_not_allowed
 ├── NotFound              404 not_found
 └── Conflict              409 idempotency_key_reused | not_cancellable
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class GatewayError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "about:blank",
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


class ValidationFailed(GatewayError):
    status = 422
    code = "invalid_request"
    title = "Invalid request"


class InvalidTimezone(ValidationFailed):
    code = "invalid_timezone"
    title = "Invalid time zone"


class InvalidToken(ValidationFailed):
    code = "invalid_token"
    title = "Invalid device token"


class UnknownApp(ValidationFailed):
    code = "unknown_app"
    title = "Unknown app"


class TierConflict(GatewayError):
    status = 422
    code = "tier_conflict"
    title = "Category and tier disagree"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"
    title = "Not allowed for this API key"

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(GatewayError):
    status = 409
    title = "Conflict"

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail)
        self.code = code


class ServiceUnavailable(GatewayError):
    status = 503
    code = "unavailable"
    title = "Service unavailable"


def problem_response(error: GatewayError, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=error.status,
        text=json.dumps(error.problem()),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        http_error = GatewayError(exc.text or exc.reason)
        http_error.status = exc.status
        http_error.code = _HTTP_CODES.get(exc.status, "http_error")
        http_error.title = exc.reason
        if exc.status == 413:
            http_error.detail = "request body is larger than server.max_body_bytes"
        elif exc.status == 404:
            http_error.detail = f"no endpoint at {request.method} {request.path}"
        elif exc.status == 405:
            http_error.detail = f"{request.method} is not allowed on {request.path}"
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(http_error, headers=allow)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(GatewayError("the gateway failed to handle this request"))
