"""Device registration, listing and removal."""

from __future__ import annotations

from aiohttp import web

from gateway.api.keys import caller, services
from gateway.api.routing import json_response, read_json
from gateway.schemas import DeviceRegistration, parse_model


async def register_device(request: web.Request) -> web.Response:
    registration = parse_model(DeviceRegistration, await read_json(request))
    device, created = await services(request).devices.register(caller(request), registration)
    return json_response(device, status=201 if created else 200)


async def list_devices(request: web.Request) -> web.Response:
    devices = await services(request).devices.of_user(
        caller(request), request.match_info["user_id"]
    )
    return json_response(devices)


async def unregister_device(request: web.Request) -> web.Response:
    await services(request).devices.unregister(caller(request), request.match_info["device_id"])
    return web.Response(status=204)
