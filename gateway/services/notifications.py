"""Sending, reading, listing and cancelling notifications."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from gateway.config import Scope
from gateway.db import transaction
from gateway.errors import Conflict, Forbidden, GatewayError, NotFound
from gateway.models import (
    PENDING_NOTIFICATION_STATUSES,
    Delivery,
    DeliveryEnd,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from gateway.schemas import (
    DeliveryOut,
    NotificationDetail,
    NotificationOut,
    NotificationPage,
    NotificationRequest,
    UserNotificationsQuery,
    parse_model,
)
from gateway.services.acceptance import Prepared, prepare_notification
from gateway.services.access import Caller
from gateway.services.context import ServiceContext
from gateway.services.idempotency import IdempotencyClaim
from gateway.services.intake import Answer, Intake, Submission
from gateway.services.pagination import encode_cursor, older_than

log = logging.getLogger(__name__)


class NotificationService:
    """Accepts notifications (through the group-committing :class:`Intake`), and reads, lists
    and cancels them within what the caller may see."""

    def __init__(self, context: ServiceContext, intake: Intake) -> None:
        self._context = context
        self.intake = intake

    def _prepare(self, caller: Caller, request: NotificationRequest) -> Prepared:
        context = self._context
        return prepare_notification(
            request,
            caller=caller,
            settings=context.settings,
            policy=context.policy,
            now=context.clock(),
        )

    async def send(
        self, caller: Caller, request: NotificationRequest, claim: IdempotencyClaim | None
    ) -> Answer:
        """Accept one notification: 202 with it once stored, or the answer on record for a
        repeated ``Idempotency-Key``. Raises the error of a refused request."""
        item: Prepared | GatewayError
        try:
            item = self._prepare(caller, request)
        except GatewayError as error:
            if claim is None:
                raise
            # A retry refused now (its expiry passed, say) still gets the answer on record.
            item = error
        return await self._submit(Submission((item,), claim))

    async def send_batch(
        self, caller: Caller, items: Sequence[Any], claim: IdempotencyClaim | None
    ) -> Answer:
        """Accept up to a batch of notifications in one go: 200 with a notification or a
        problem per item, in order."""
        prepared: list[Prepared | GatewayError] = []
        for item in items:
            try:
                prepared.append(self._prepare(caller, parse_model(NotificationRequest, item)))
            except GatewayError as error:
                prepared.append(error)
        return await self._submit(Submission(tuple(prepared), claim, batch=True))

    async def _submit(self, submission: Submission) -> Answer:
        answer = await self.intake.submit(submission)
        metrics = self._context.metrics
        for notification in answer.stored:
            metrics.notifications_accepted.labels(
                notification.tier, notification.status, notification.reason or ""
            ).inc()
        queued = [n.id for n in answer.stored if n.status == "queued"]
        if queued:
            self._context.dispatch(queued)
        return answer

    async def get(self, caller: Caller, notification_id: str) -> NotificationDetail:
        """The notification with its deliveries; 404 when absent or not the caller's to see."""
        async with self._context.sessions() as session:
            notification = await session.get(Notification, notification_id)
            self._check_visible(caller, notification_id, notification)
            assert notification is not None
            deliveries = (
                await session.execute(
                    select(Delivery)
                    .where(Delivery.notification_id == notification_id)
                    .order_by(col(Delivery.created_at), col(Delivery.id))
                )
            ).scalars()
            return NotificationDetail(
                **NotificationOut.model_validate(notification).model_dump(),
                deliveries=[DeliveryOut.model_validate(delivery) for delivery in deliveries],
            )

    async def of_user(
        self, caller: Caller, user_id: str, query: UserNotificationsQuery
    ) -> NotificationPage:
        """A page of the user's notifications of the apps the caller may use, newest first
        (creation time, then id), and the cursor of the next page (None on the last). 422 for a
        cursor this did not give out."""
        created_at, row_id = col(Notification.created_at), col(Notification.id)
        statement = select(Notification).where(col(Notification.user_id) == user_id)
        if caller.apps is not None:
            statement = statement.where(col(Notification.app).in_(sorted(caller.apps)))
        if query.status is not None:
            statement = statement.where(col(Notification.status) == query.status)
        if query.cursor is not None:
            statement = statement.where(older_than(created_at, row_id, query.cursor, id_type=str))
        statement = statement.order_by(created_at.desc(), row_id.desc()).limit(query.limit + 1)
        async with self._context.sessions() as session:
            rows = list((await session.execute(statement)).scalars())
        page = rows[: query.limit]
        last = page[-1] if len(rows) > query.limit else None
        return NotificationPage(
            notifications=[NotificationOut.model_validate(row) for row in page],
            next_cursor=encode_cursor(last.created_at, last.id) if last else None,
        )

    async def inspect(self, notification_id: str) -> tuple[Notification, list[Delivery]] | None:
        """Every stored column of a notification and its deliveries, for the operator; None
        when there is no such notification."""
        async with self._context.sessions() as session:
            notification = await session.get(Notification, notification_id)
            if notification is None:
                return None
            deliveries = await session.execute(
                select(Delivery)
                .where(col(Delivery.notification_id) == notification_id)
                .order_by(col(Delivery.created_at), col(Delivery.id))
            )
            return notification, list(deliveries.scalars())

    async def cancel(self, caller: Caller, notification_id: str) -> NotificationOut:
        """Cancel a deferred or queued notification; its pending deliveries end ``failed`` with
        error ``cancelled``. 409 ``not_cancellable`` otherwise."""
        now = self._context.clock()
        async with transaction(self._context.sessions) as session:
            # Lock and re-read the row: a worker finishing it (or the release job) may hold it,
            # and its status after that commit, not the one read before, decides whether it
            # can be cancelled. Without this a just-sent one was overwritten with "cancelled".
            notification = await session.get(
                Notification, notification_id, with_for_update=True, populate_existing=True
            )
            self._check_visible(caller, notification_id, notification)
            assert notification is not None
            if notification.sender != caller.name and caller.scopes != frozenset(Scope):
                raise Forbidden(
                    f"notification {notification_id} was sent by another API key; only that "
                    "key (or one with every scope) may cancel it",
                    code="not_owner",
                )
            if notification.status not in PENDING_NOTIFICATION_STATUSES:
                raise Conflict(
                    f"notification {notification_id} is {notification.status}; only deferred "
                    "or queued notifications can be cancelled",
                    code="not_cancellable",
                )
            notification.status = NotificationStatus.CANCELLED
            notification.reason = None
            notification.updated_at = now
            session.add(notification)
            await session.execute(
                sa.update(Delivery)
                .where(
                    col(Delivery.notification_id) == notification_id,
                    col(Delivery.status) == DeliveryStatus.PENDING,
                )
                .values(
                    status=DeliveryStatus.FAILED,
                    error="cancelled",
                    end_reason=DeliveryEnd.CANCELLED,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            return NotificationOut.model_validate(notification)

    @staticmethod
    def _check_visible(
        caller: Caller, notification_id: str, notification: Notification | None
    ) -> None:
        """404 unless the caller may see it: one of its apps, and either sent by this key or
        the key may read any user's notifications (``users:read``)."""
        if (
            notification is None
            or not caller.may_use_app(notification.app)
            or (notification.sender != caller.name and not caller.has_scope(Scope.USERS_READ))
        ):
            raise NotFound(f"no notification with id {notification_id!r}")
