"""Sending, reading and cancelling notifications."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.api.app import (
    CLOCK,
    DISPATCH,
    INTAKE,
    METRICS,
    POLICY,
    SESSIONS,
    SETTINGS,
    caller,
)
from gateway.api.errors import GatewayError, NotFound, ValidationFailed
from gateway.api.routing import Route, json_response, parse_model, read_json
from gateway.api.schemas import (
    BatchRequest,
    BatchResult,
    DeliveryOut,
    NotificationDetail,
    NotificationOut,
    NotificationRequest,
)
from gateway.db import transaction
from gateway.idempotency import Produce, check_key, request_fingerprint, run_idempotent
from gateway.intake import IdempotencyClaim
from gateway.models import Notification, NotificationStatus
from gateway.notifications import (
    accept_notification,
    cancel_notification,
    deliveries_of,
    get_notification,
    lock_users,
    prepare_notification,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"


async def _accept_one(request: web.Request, session: AsyncSession, payload: Any) -> NotificationOut:
    body = parse_model(NotificationRequest, payload)
    notification = await accept_notification(
        session,
        body,
        caller=caller(request),
        settings=request.app[SETTINGS],
        policy=request.app[POLICY],
        now=request.app[CLOCK](),
    )
    _count_accepted(request, notification)
    return notification


def _count_accepted(request: web.Request, notification: NotificationOut) -> None:
    request.app[METRICS].notifications_accepted.labels(
        notification.tier, notification.status, notification.reason or ""
    ).inc()


def _refuse_with(error: GatewayError) -> Produce:
    async def refuse(_session: AsyncSession) -> tuple[int, dict[str, Any]]:
        raise error

    return refuse


def _queued_ids(bodies: Sequence[dict[str, Any]]) -> list[str]:
    return [body["id"] for body in bodies if body.get("status") == NotificationStatus.QUEUED]


async def respond_idempotently(
    request: web.Request,
    payload: Any,
    produce: Produce,
    queued_ids: Callable[[dict[str, Any]], list[str]],
) -> web.Response:
    """Run ``produce`` once per ``Idempotency-Key`` (when given), then hand the queued
    notifications of a fresh answer to the delivery worker."""
    key_header = request.headers.get(IDEMPOTENCY_HEADER)
    status, body, replayed = await run_idempotent(
        request.app[SESSIONS],
        api_key=caller(request).name,
        key=check_key(key_header) if key_header is not None else None,
        fingerprint=request_fingerprint(request.method, request.path, payload),
        now=request.app[CLOCK](),
        retention=timedelta(hours=request.app[SETTINGS].retention.idempotency_hours),
        produce=produce,
    )
    if not replayed:
        request.app[DISPATCH](queued_ids(body))
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return web.json_response(body, status=status, headers=headers)


async def send_notification(request: web.Request) -> web.Response:
    payload = await read_json(request)
    key_header = request.headers.get(IDEMPOTENCY_HEADER)
    key = check_key(key_header) if key_header is not None else None
    try:
        prepared = prepare_notification(
            parse_model(NotificationRequest, payload),
            caller=caller(request),
            settings=request.app[SETTINGS],
            policy=request.app[POLICY],
            now=request.app[CLOCK](),
        )
    except GatewayError as error:
        if key is None:
            raise
        # A retry refused now (its expiry passed, say) still gets the answer on record.
        return await respond_idempotently(request, payload, _refuse_with(error), lambda _: [])
    claim = None
    if key is not None:
        fingerprint = request_fingerprint(request.method, request.path, payload)
        claim = IdempotencyClaim(caller(request).name, key, fingerprint)
    answer = await request.app[INTAKE].submit(prepared, claim)
    if answer.notification is not None:
        _count_accepted(request, answer.notification)
    if not answer.replayed:
        request.app[DISPATCH](_queued_ids([answer.body]))
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return web.json_response(answer.body, status=answer.status, headers=headers)


async def send_batch(request: web.Request) -> web.Response:
    payload = await read_json(request)
    if isinstance(payload, dict) and isinstance(payload.get("notifications"), list):
        limit = request.app[SETTINGS].server.max_batch_size
        if len(payload["notifications"]) > limit:
            raise ValidationFailed(
                f"a batch holds at most {limit} notifications "
                f"(got {len(payload['notifications'])}); split it"
            )
    batch = parse_model(BatchRequest, payload)

    async def produce(session: AsyncSession) -> tuple[int, dict[str, Any]]:
        # lock every user of the batch up front, in the one order all acceptances use
        user_ids = [item.get("user_id") for item in batch.notifications]
        await lock_users(session, [user_id for user_id in user_ids if isinstance(user_id, str)])
        results: list[dict[str, Any]] = []
        for index, item in enumerate(batch.notifications):
            try:
                async with session.begin_nested():
                    notification = await _accept_one(request, session, item)
                results.append(notification.model_dump(mode="json"))
            except GatewayError as error:
                problem = error.problem()
                for field_error in problem.get("errors", []):
                    field_error["field"] = f"notifications.{index}.{field_error['field']}"
                results.append(problem)
        return 200, {"results": results}

    return await respond_idempotently(
        request, payload, produce, lambda body: _queued_ids(body["results"])
    )


async def read_notification(request: web.Request) -> web.Response:
    notification_id = request.match_info["notification_id"]
    async with request.app[SESSIONS]() as session:
        notification = await get_notification(session, notification_id)
        _check_visible(request, notification)
        deliveries = await deliveries_of(session, notification_id)
        detail = NotificationDetail(
            **NotificationOut.model_validate(notification).model_dump(),
            deliveries=[DeliveryOut.model_validate(d) for d in deliveries],
        )
    return json_response(detail)


def _check_visible(request: web.Request, notification: Notification) -> None:
    key = caller(request)
    if key.apps is not None and notification.app not in key.apps:
        raise NotFound(f"no notification with id {notification.id!r}")


async def cancel(request: web.Request) -> web.Response:
    notification_id = request.match_info["notification_id"]
    async with transaction(request.app[SESSIONS]) as session:
        notification = await get_notification(session, notification_id)
        _check_visible(request, notification)
        notification = await cancel_notification(session, notification_id, now=request.app[CLOCK]())
        body = NotificationOut.model_validate(notification)
    return json_response(body)


ROUTES = [
    Route(
        "POST",
        "/v1/notifications",
        send_notification,
        "Send a notification (classified, checked against consent and quiet hours)",
        request_model=NotificationRequest,
        responses={202: NotificationOut},
        headers=(IDEMPOTENCY_HEADER,),
    ),
    Route(
        "POST",
        "/v1/notifications/batch",
        send_batch,
        "Send up to 500 notifications; results in order",
        request_model=BatchRequest,
        responses={200: BatchResult},
        headers=(IDEMPOTENCY_HEADER,),
    ),
    Route(
        "GET",
        "/v1/notifications/{notification_id}",
        read_notification,
        "A notification with its deliveries",
        responses={200: NotificationDetail},
    ),
    Route(
        "DELETE",
        "/v1/notifications/{notification_id}",
        cancel,
        "Cancel a deferred or queued notification",
        responses={200: NotificationOut},
    ),
]
