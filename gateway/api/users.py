"""A user's preferences, and forgetting a user."""

from __future__ import annotations

from aiohttp import web

from gateway.api.keys import caller, services
from gateway.api.routing import json_response, read_json, read_query
from gateway.schemas import PageQuery, PreferencesUpdate, parse_model


async def get_preferences(request: web.Request) -> web.Response:
    preferences = await services(request).preferences.get(
        caller(request), request.match_info["user_id"]
    )
    return json_response(preferences)


async def _update_preferences(request: web.Request, *, replace: bool) -> web.Response:
    update = parse_model(PreferencesUpdate, await read_json(request))
    preferences = await services(request).preferences.update(
        caller(request), request.match_info["user_id"], update, replace=replace
    )
    return json_response(preferences)


async def put_preferences(request: web.Request) -> web.Response:
    return await _update_preferences(request, replace=True)


async def patch_preferences(request: web.Request) -> web.Response:
    return await _update_preferences(request, replace=False)


async def preference_history(request: web.Request) -> web.Response:
    page = read_query(request, PageQuery)
    history = await services(request).preferences.history(
        caller(request), request.match_info["user_id"], page
    )
    return json_response(history)


async def forget_user(request: web.Request) -> web.Response:
    await services(request).users.forget(caller(request), request.match_info["user_id"])
    return web.Response(status=204)
