"""What the gateway refuses, and why: one exception tree shared by the HTTP API, the CLI and the
scheduler.

Services raise these; nothing here knows about HTTP. The API renders each one as RFC 9457
``application/problem+json`` with the error's ``status`` and ``code`` (see
:mod:`gateway.api.problems`); the CLI prints the ``detail``.

GatewayError (status, code)
 ├── ValidationFailed      422 invalid_request   (errors: [{field, message}])
 │    ├── InvalidTimezone  422 invalid_timezone
 │    ├── InvalidToken     422 invalid_token
 │    └── UnknownApp       422 unknown_app
 ├── InvalidJson           400 invalid_json
 ├── BadRequest            400 bad_request | line_too_long | unknown_method
 ├── UnsupportedEncoding   415 unsupported_encoding
 ├── TierConflict          422 tier_conflict
 ├── PayloadTooLarge       413 payload_too_large
 ├── Unauthorized          401 unauthorized
 ├── Forbidden             403 tier_not_allowed | app_not_allowed | scope_required
 ├── NotFound              404 not_found
 ├── Conflict              409 idempotency_key_reused | not_cancellable
 └── Unavailable           503 unavailable       (retry_after: seconds, when known)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field of a request: where (dotted path) and what is wrong."""

    field: str
    message: str


class GatewayError(Exception):
    """Base of every refusal; ``status`` is the HTTP status it is answered with."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
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


class InvalidJson(GatewayError):
    status = 400
    code = "invalid_json"
    title = "Malformed JSON"


class BadRequest(GatewayError):
    """Not a well-formed HTTP request, or a body that does not decode as its
    ``Content-Encoding`` says."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, *, code: str = "bad_request") -> None:
        super().__init__(detail)
        self.code = code


class UnsupportedEncoding(GatewayError):
    status = 415
    code = "unsupported_encoding"
    title = "Unsupported Content-Encoding"


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


class Unavailable(GatewayError):
    """The gateway cannot take the request now (shutting down, overloaded, database away);
    the caller should retry, after ``retry_after`` seconds when given."""

    status = 503
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
