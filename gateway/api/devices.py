"""Device registration and listing, and user erasure."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.api.app import CLOCK, SESSIONS, SETTINGS, caller
from gateway.api.errors import NotFound
from gateway.api.routing import Route, json_response, parse_model, read_json
from gateway.api.schemas import DeviceList, DeviceOut, DeviceRegistration
from gateway.db import transaction
from gateway.models import Delivery, DeliveryStatus, Notification, Preference
from gateway.notifications import resolve_app
from tokens.models import Device, token_suffix
from tokens.registry import forget_user_devices, register_device, unregister_device

log = logging.getLogger(__name__)


async def move_pending_deliveries(session: AsyncSession, old_device: str, new_device: str) -> None:
    """A refreshed token inherits the retired token's pending deliveries."""
    already = select(Delivery.notification_id).where(Delivery.device_id == new_device)
    await session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.device_id) == old_device,
            col(Delivery.status) == DeliveryStatus.PENDING,
            col(Delivery.notification_id).not_in(already),
        )
        .values(device_id=new_device, lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


async def register(request: web.Request) -> web.Response:
    body = parse_model(DeviceRegistration, await read_json(request))
    settings = request.app[SETTINGS]
    key = caller(request)
    app_id = resolve_app(settings, body.app, key)
    app = settings.app(app_id)
    assert app is not None
    environment = body.environment
    if environment is None:
        environment = app.apns.environment if body.platform == "ios" and app.apns else "production"
    now = request.app[CLOCK]()
    async with transaction(request.app[SESSIONS]) as session:
        registration = await register_device(
            session,
            now=now,
            user_id=body.user_id,
            app=app_id,
            platform=body.platform,
            token=body.token,
            environment=environment,
            timezone=body.timezone,
            locale=body.locale,
            permission=body.permission,
            replaces=body.replaces,
            actor=f"api:{key.name}",
        )
        if registration.retired is not None:
            await move_pending_deliveries(session, registration.retired.id, registration.device.id)
        device = DeviceOut.model_validate(registration.device)
    log.info(
        "device %s %s user=%s app=%s token=…%s",
        "registered" if registration.created else "refreshed",
        device.id,
        device.user_id,
        app_id,
        token_suffix(body.token),
    )
    return json_response(device, status=201 if registration.created else 200)


async def list_devices(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]
    key = caller(request)
    query = select(Device).where(Device.user_id == user_id).order_by(col(Device.created_at))
    if key.apps is not None:
        query = query.where(col(Device.app).in_(key.apps))
    async with request.app[SESSIONS]() as session:
        devices = (await session.execute(query)).scalars().all()
        return json_response(DeviceList(devices=[DeviceOut.model_validate(d) for d in devices]))


async def unregister(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    key = caller(request)
    async with transaction(request.app[SESSIONS]) as session:
        device = await session.get(Device, device_id)
        if device is None or (key.apps is not None and device.app not in key.apps):
            raise NotFound(f"no device with id {device_id!r}")
        await unregister_device(
            session, device_id, now=request.app[CLOCK](), actor=f"api:{key.name}"
        )
    return web.Response(status=204)


async def forget_user(request: web.Request) -> web.Response:
    """Erase a user: devices, preferences and notifications (pending ones are never sent)."""
    user_id = request.match_info["user_id"]
    key = caller(request)
    now = request.app[CLOCK]()
    async with transaction(request.app[SESSIONS]) as session:
        devices = await forget_user_devices(session, user_id, now=now, actor=f"api:{key.name}")
        await session.execute(sa.delete(Preference).where(col(Preference.user_id) == user_id))
        notification_ids = select(Notification.id).where(Notification.user_id == user_id)
        await session.execute(
            sa.delete(Delivery).where(col(Delivery.notification_id).in_(notification_ids))
        )
        deleted = await session.execute(
            sa.delete(Notification).where(col(Notification.user_id) == user_id)
        )
    log.info(
        "forgot user %s: %d devices, %d notifications, by %s",
        user_id,
        devices,
        deleted.rowcount,  # type: ignore[attr-defined]
        key.name,
    )
    return web.Response(status=204)


ROUTES = [
    Route(
        "POST",
        "/v1/devices",
        register,
        "Register or refresh a device token",
        request_model=DeviceRegistration,
        responses={201: DeviceOut, 200: DeviceOut},
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/devices",
        list_devices,
        "A user's devices and their token status",
        responses={200: DeviceList},
    ),
    Route(
        "DELETE",
        "/v1/devices/{device_id}",
        unregister,
        "Unregister a device",
        responses={204: None},
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}",
        forget_user,
        "Forget a user: devices, preferences, notifications",
        responses={204: None},
    ),
]
