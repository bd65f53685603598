"""Permission events, the soft ask, the opt-in funnel, and what a user missed."""

from __future__ import annotations

from aiohttp import web

from gateway.api.keys import caller, services
from gateway.api.routing import json_response, read_json, read_query
from gateway.schemas import (
    FunnelQuery,
    MissedQuery,
    PermissionEventReport,
    SoftAskQuery,
    parse_model,
)

REPLAYED_HEADER = "Idempotent-Replayed"


async def record_permission_event(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]  # checked by the input middleware
    report = parse_model(PermissionEventReport, await read_json(request))
    event, created = await services(request).permission.record(caller(request), user_id, report)
    response = json_response(event, status=201 if created else 200)
    if not created:
        response.headers[REPLAYED_HEADER] = "true"
    return response


async def soft_ask(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]  # checked by the input middleware
    query = read_query(request, SoftAskQuery)
    answer = await services(request).permission.soft_ask(caller(request), user_id, query)
    return json_response(answer)


async def permission_funnel(request: web.Request) -> web.Response:
    query = read_query(request, FunnelQuery)
    funnel = await services(request).permission.funnel(
        caller(request), request.match_info["app"], query
    )
    return json_response(funnel)


async def missed_notifications(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]  # checked by the input middleware
    query = read_query(request, MissedQuery)
    missed = await services(request).permission.missed(caller(request), user_id, query)
    return json_response(missed)
