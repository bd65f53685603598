"""The input boundary: the ids a route's path carries and the query parameters it reads are
checked here, once for every route, before its handler runs. The body is checked as it is read
(:func:`gateway.api.routing.read_json`).

Path ids are typed by :data:`gateway.schemas.PATH_PARAMETERS`, the same types that validate the
ids of a body, so an id that could never be stored (too long, a control character, a NUL) is a
422 here rather than a database error or a forged log line later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import MultiMapping
from pydantic import ValidationError

from gateway.api.routing import Handler, Route
from gateway.errors import FieldError, ValidationFailed
from gateway.schemas import validation_error


def check_path(route: Route, match_info: Mapping[str, str]) -> None:
    """422 naming each path parameter of ``route`` that is not of its declared type."""
    if route.path_model is None:
        return
    try:
        route.path_model.model_validate(dict(match_info))
    except ValidationError as exc:
        raise validation_error(exc) from None


def check_query(route: Route, query: MultiMapping[str]) -> None:
    """422 for a NUL in a query parameter ``route`` reads (the others are never looked at)."""
    for name in route.query_names:
        if any("\x00" in value for value in query.getall(name, ())):
            raise ValidationFailed(
                f"{name}: a query parameter cannot hold a NUL character",
                errors=[FieldError(name, "holds a NUL character")],
            )


def input_middleware(routes: Iterable[Route]) -> Middleware:
    """Check the path and query of every request to one of ``routes`` (after authentication:
    a caller without a key learns nothing about what it sent)."""
    by_endpoint = {(route.method, route.path): route for route in routes}

    @web.middleware
    async def check_inputs(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = by_endpoint.get((request.method, resource.canonical)) if resource else None
        if route is not None:
            check_path(route, request.match_info)
            check_query(route, request.query)
        return await handler(request)

    return check_inputs
