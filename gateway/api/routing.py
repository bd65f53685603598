"""How a route is declared, and the three steps every handler takes: parse the request, call
one service, render its answer."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.api.keys import caller
from gateway.config import Scope
from gateway.errors import InvalidJson
from gateway.services.idempotency import IdempotencyClaim, check_key, request_fingerprint
from gateway.services.intake import Answer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IDEMPOTENCY_HEADER = "Idempotency-Key"


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


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 ``invalid_json`` when it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None


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
