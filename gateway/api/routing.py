"""The route table shared by the aiohttp router and the OpenAPI generator, and request parsing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.errors import (
    FieldError,
    GatewayError,
    InvalidTimezone,
    InvalidToken,
    ValidationFailed,
)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    request_model: type[BaseModel] | None = None
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    public: bool = False  # reachable without an API key
    content_type: str = "application/json"
    headers: tuple[str, ...] = ()  # request headers the endpoint reads


class InvalidJson(GatewayError):
    status = 400
    code = "invalid_json"
    title = "Malformed JSON"


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 ``invalid_json`` when it is not JSON."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None


def validation_error(exc: ValidationError, *, prefix: str = "") -> ValidationFailed:
    """Translate pydantic's errors into a 422 naming every field, with SPEC's specific codes."""
    errors: list[FieldError] = []
    kinds: set[str] = set()
    for item in exc.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"])
        errors.append(FieldError(field=f"{prefix}{location}" or "(body)", message=item["msg"]))
        kinds.add(item["type"])
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    if "invalid_timezone" in kinds:
        return InvalidTimezone(summary, errors=errors)
    if "invalid_token" in kinds:
        return InvalidToken(summary, errors=errors)
    return ValidationFailed(summary, errors=errors)


def parse_model(model: type[M], payload: Any) -> M:
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the request body must be a JSON object",
            errors=[FieldError(field="(body)", message="expected a JSON object")],
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None


def json_response(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )
