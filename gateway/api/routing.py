"""How a route is declared, and the three steps every handler takes: parse the request, call
one service, render its answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from gateway.api.json_body import decode_json
from gateway.api.keys import caller
from gateway.config import Scope
from gateway.errors import BadRequest, FieldError, UnsupportedEncoding, ValidationFailed
from gateway.schemas import parse_model, path_parameters_model
from gateway.services.idempotency import IdempotencyClaim, check_key, request_fingerprint
from gateway.services.intake import Answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_HEADER = "Idempotency-Key"
BODY_ENCODINGS = ("identity", "gzip", "deflate")
"""The ``Content-Encoding`` values a body may arrive in (aiohttp decodes gzip and deflate)."""


def unsupported_encoding() -> UnsupportedEncoding:
    """The 415 for a body in any other ``Content-Encoding``."""
    return UnsupportedEncoding(
        f"a body is accepted uncompressed or as {' or '.join(BODY_ENCODINGS[1:])}, "
        "not in any other Content-Encoding"
    )


@dataclass(frozen=True)
class Route:
    """One endpoint: the router and the OpenAPI document are both built from these."""

    method: str
    path: str
    handler: Handler
    summary: str
    request_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None  # the query string's parameters
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    public: bool = False  # reachable without an API key
    content_type: str = "application/json"
    headers: tuple[str, ...] = ()  # request headers the endpoint reads
    scopes: tuple[Scope, ...] = ()
    """A key needs one of these; empty: any valid key (or none, when ``public``)."""
    path_model: type[BaseModel] | None = field(init=False, repr=False, compare=False)
    """The ``{placeholders}`` of ``path``, typed by :data:`gateway.schemas.PATH_PARAMETERS`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_model", path_parameters_model(self.path))

    @property
    def query_names(self) -> tuple[str, ...]:
        """The query parameters the endpoint reads."""
        return tuple(self.query_model.model_fields) if self.query_model is not None else ()


async def read_json(request: web.Request) -> Any:
    """The request body as JSON: 415 ``unsupported_encoding`` for a ``Content-Encoding`` other
    than :data:`BODY_ENCODINGS`, 400 when it does not decode as its encoding says or is not
    JSON, 422 for a value no field can take (see :mod:`gateway.api.json_body`)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
    if encoding not in BODY_ENCODINGS:
        raise unsupported_encoding()
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        broken = "" if encoding == "identity" else f"it is not valid {encoding}, or "
        raise BadRequest(f"the request body could not be read: {broken}it was cut short") from None
    return decode_json(raw)


def read_query(request: web.Request, model: type[M]) -> M:
    """The query string as ``model``: 422 naming each parameter that is invalid, unknown (a
    misspelt filter must not silently widen the answer) or given twice."""
    query = request.rel_url.query
    repeated = sorted({name for name in query if len(query.getall(name)) > 1})
    if repeated:
        message = "give each query parameter once"
        raise ValidationFailed(
            f"{', '.join(repeated)}: {message}",
            errors=[FieldError(field=name, message=message) for name in repeated],
        )
    return parse_model(model, dict(query))


def idempotency_claim(request: web.Request, payload: Any) -> IdempotencyClaim | None:
    """The request's ``Idempotency-Key`` (scoped to the calling key), if it sent one."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    return IdempotencyClaim(
        api_key=caller(request).name,
        key=check_key(key),
        fingerprint=request_fingerprint(request.method, request.path, payload),
    )


def dumps(body: Any) -> str:
    """Compact JSON, the one spacing every answer uses."""
    return json.dumps(body, separators=(",", ":"))


def json_response(body: BaseModel | dict[str, Any], *, status: int = 200) -> web.Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else dumps(body)
    return web.Response(status=status, text=text, content_type="application/json")


def answer_response(answer: Answer) -> web.Response:
    """A send's answer; a replayed one says so in ``Idempotent-Replayed``."""
    response = json_response(answer.body, status=answer.status)
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
