"""Cancel racing the worker's finish (PostgreSQL, where the two really run side by side): a
``DELETE`` that waited for the worker's transaction must see the notification as the worker
left it, not cancel one that was just sent."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.db import lock_notifications, transaction
from gateway.delivery.queue import finish_notifications
from gateway.models import Delivery, DeliveryStatus
from tests.pipeline.conftest import Pipeline

BOUND_SECONDS = 30  # a hang guard: the test waits on database state, not on time


async def wait_until_blocked_on_a_lock(pipeline: Pipeline) -> None:
    """Poll (bounded) until some other session waits on a row lock."""
    for _ in range(BOUND_SECONDS * 20):
        async with pipeline.sessions() as session:
            waiting = await session.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
            if waiting.scalar_one():
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the DELETE never waited for the worker's lock")


async def test_cancel_waiting_for_the_worker_sees_it_sent(pipeline: Pipeline) -> None:
    if pipeline.settings.database.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: there is no side-by-side race")
    await pipeline.register()
    notification = await pipeline.send(tier="transactional")
    now = pipeline.clock.now

    async with transaction(pipeline.sessions) as worker_session:
        # what record_reports does for a successful send, held open
        await lock_notifications(worker_session, {notification["id"]})
        await worker_session.execute(
            sa.update(Delivery)
            .where(col(Delivery.notification_id) == notification["id"])
            .values(status=DeliveryStatus.SENT, attempts=1, updated_at=now)
        )
        finished = await finish_notifications(worker_session, {notification["id"]}, now=now)
        assert finished == [notification["id"]]
        cancel = asyncio.create_task(
            pipeline.client.delete(f"/v1/notifications/{notification['id']}")
        )
        await wait_until_blocked_on_a_lock(pipeline)

    response = await asyncio.wait_for(cancel, BOUND_SECONDS)
    assert response.status == 409, await response.text()
    assert (await response.json())["code"] == "not_cancellable"
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
