"""Sending, reading, listing and cancelling notifications."""

from __future__ import annotations

from aiohttp import web

from gateway.api.keys import caller, services
from gateway.api.routing import (
    answer_response,
    idempotency_claim,
    json_response,
    read_json,
    read_query,
)
from gateway.errors import ValidationFailed
from gateway.schemas import (
    BatchRequest,
    NotificationRequest,
    UserNotificationsQuery,
    parse_model,
)


async def send_notification(request: web.Request) -> web.Response:
    payload = await read_json(request)
    body = parse_model(NotificationRequest, payload)
    answer = await services(request).notifications.send(
        caller(request), body, idempotency_claim(request, payload)
    )
    return answer_response(answer)


async def send_batch(request: web.Request) -> web.Response:
    payload = await read_json(request)
    limit = services(request).context.settings.server.max_batch_size
    if isinstance(payload, dict) and isinstance(payload.get("notifications"), list):
        count = len(payload["notifications"])
        if count > limit:
            raise ValidationFailed(
                f"a batch holds at most {limit} notifications (got {count}); split it"
            )
    batch = parse_model(BatchRequest, payload)
    answer = await services(request).notifications.send_batch(
        caller(request), batch.notifications, idempotency_claim(request, payload)
    )
    return answer_response(answer)


async def read_notification(request: web.Request) -> web.Response:
    notification_id = request.match_info["notification_id"]
    detail = await services(request).notifications.get(caller(request), notification_id)
    return json_response(detail)


async def cancel_notification(request: web.Request) -> web.Response:
    notification_id = request.match_info["notification_id"]
    notification = await services(request).notifications.cancel(caller(request), notification_id)
    return json_response(notification)


async def list_user_notifications(request: web.Request) -> web.Response:
    user_id = request.match_info["user_id"]  # checked against the path's model already
    query = read_query(request, UserNotificationsQuery)
    page = await services(request).notifications.of_user(caller(request), user_id, query)
    return json_response(page)
