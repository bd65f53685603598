"""Group commit at ``POST /v1/notifications``: requests that arrive together share one
transaction, yet each gets its own answer, its own idempotency and its own failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from gateway.api.keys import SERVICES
from gateway.db import session_factory
from gateway.errors import Conflict, Unavailable
from gateway.models import Delivery, Notification
from gateway.schemas import NotificationOut, NotificationRequest
from gateway.services import intake as intake_module
from gateway.services.acceptance import Prepared, prepare_notification
from gateway.services.access import Caller
from gateway.services.idempotency import IdempotencyClaim
from gateway.services.intake import Answer, Intake, Submission
from tests.api.conftest import Client, FakeClock, register

pytestmark = pytest.mark.asyncio


def prepared(client: Client, clock: FakeClock, **fields: Any) -> Prepared:
    context = client.app[SERVICES].context
    body = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x", **fields}
    return prepare_notification(
        NotificationRequest.model_validate(body),
        caller=Caller.from_key(context.settings.api_keys[0]),
        settings=context.settings,
        policy=context.policy,
        now=clock(),
    )


def claim(key: str, fingerprint: str) -> IdempotencyClaim:
    return IdempotencyClaim(api_key="full", key=key, fingerprint=fingerprint)


def one(item: Prepared, idempotency: IdempotencyClaim | None = None) -> Submission:
    return Submission((item,), idempotency)


def intake_of(client: Client) -> Intake:
    return client.app[SERVICES].notifications.intake


def count_transactions(engine: AsyncEngine) -> list[int]:
    begun = [0]

    def on_begin(_connection: Any) -> None:
        begun[0] += 1

    sa.event.listen(engine.sync_engine, "begin", on_begin)
    return begun


async def stored_count(engine: AsyncEngine, model: type[Notification] | type[Delivery]) -> int:
    async with AsyncSession(engine) as session:
        return int((await session.execute(sa.select(sa.func.count()).select_from(model))).scalar())


async def test_submissions_arriving_together_share_one_transaction(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await register(client)
    intake = intake_of(client)
    transactions = count_transactions(engine)
    answers = await asyncio.gather(
        *(intake.submit(one(prepared(client, clock, body=f"n{i}"), None)) for i in range(10))
    )
    assert transactions[0] == 1
    assert [answer.status for answer in answers] == [202] * 10
    assert len({answer.body["id"] for answer in answers}) == 10
    assert {answer.body["status"] for answer in answers} == {"queued"}
    async with AsyncSession(engine) as session:  # each answer is its own request's
        for index, answer in enumerate(answers):
            stored = await session.get(Notification, answer.body["id"])
            assert stored is not None and stored.body == f"n{index}"
    assert await stored_count(engine, Notification) == 10
    assert await stored_count(engine, Delivery) == 10  # one device, one delivery each


async def test_a_batch_counts_each_send_against_the_cap_of_the_next(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    await client.put("/v1/users/u1/preferences", json={"promotional": True})
    intake = intake_of(client)
    answers = await asyncio.gather(
        *(intake.submit(one(prepared(client, clock, tier="promotional"), None)) for _ in range(4))
    )
    statuses = [(answer.body["status"], answer.body["reason"]) for answer in answers]
    assert statuses == [("queued", None)] * 2 + [("dropped", "frequency_capped")] * 2


async def test_one_key_twice_in_a_batch_stores_once(client: Client, clock: FakeClock) -> None:
    await register(client)
    intake = intake_of(client)
    same, other = prepared(client, clock), prepared(client, clock, body="changed")
    first, replay, reused = await asyncio.gather(
        intake.submit(one(same, claim("k", "fingerprint-a"))),
        intake.submit(one(same, claim("k", "fingerprint-a"))),
        intake.submit(one(other, claim("k", "fingerprint-b"))),
        return_exceptions=True,
    )
    assert isinstance(first, Answer) and isinstance(replay, Answer)
    assert (first.replayed, replay.replayed) == (False, True)
    assert replay.body == first.body
    assert isinstance(reused, Conflict) and reused.code == "idempotency_key_reused"
    # and a later batch replays it from the record
    again = await intake.submit(one(same, claim("k", "fingerprint-a")))
    assert (again.replayed, again.body["id"]) == (True, first.body["id"])


async def test_a_failing_submission_fails_alone(
    client: Client, clock: FakeClock, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    real_store = intake_module.store_notifications

    async def store(
        session: AsyncSession, batch: Sequence[Prepared], **kwargs: Any
    ) -> list[NotificationOut]:
        if any(item.request.body == "poison" for item in batch):
            raise RuntimeError("this request breaks its transaction")
        return await real_store(session, batch, **kwargs)

    monkeypatch.setattr(intake_module, "store_notifications", store)
    intake = intake_of(client)
    results = await asyncio.gather(
        intake.submit(one(prepared(client, clock, body="first"), None)),
        intake.submit(one(prepared(client, clock, body="poison"), None)),
        intake.submit(one(prepared(client, clock, body="last"), None)),
        return_exceptions=True,
    )
    assert isinstance(results[0], Answer) and isinstance(results[2], Answer)
    assert isinstance(results[1], RuntimeError)
    assert await stored_count(engine, Notification) == 2


async def test_close_stores_what_waits_and_refuses_what_comes_after(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await register(client)
    app = client.app
    intake = Intake(
        session_factory(engine),
        policy=app[SERVICES].context.policy,
        clock=clock,
        retention=timedelta(hours=24),
    )
    intake.start()
    waiting = [
        asyncio.ensure_future(intake.submit(one(prepared(client, clock), None))) for _ in range(3)
    ]
    await asyncio.sleep(0)  # the submissions are queued
    await intake.close()
    assert [(await answer).status for answer in waiting] == [202] * 3
    with pytest.raises(Unavailable):
        await intake.submit(one(prepared(client, clock), None))


async def test_a_retry_refused_now_still_gets_the_answer_on_record(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    expires_at = (clock.now + timedelta(minutes=5)).isoformat()
    payload = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    payload["expires_at"] = expires_at
    headers = {"Idempotency-Key": "retry-late"}
    first = await client.post("/v1/notifications", json=payload, headers=headers)
    assert first.status == 202
    clock.advance(minutes=10)  # the retry comes after the notification's expiry
    retry = await client.post("/v1/notifications", json=payload, headers=headers)
    assert retry.status == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert (await retry.json())["id"] == (await first.json())["id"]
    fresh = await client.post("/v1/notifications", json=payload)  # without the key: refused
    assert fresh.status == 422


async def test_a_collapse_key_supersedes_an_earlier_one_of_the_same_batch(
    client: Client, clock: FakeClock
) -> None:
    await register(client, timezone="Australia/Sydney")  # 22:00 there: quiet hours
    intake = intake_of(client)
    fields = {"tier": "behavioral", "collapse_key": "cart"}
    first, second, third = await asyncio.gather(
        intake.submit(one(prepared(client, clock, body="1", **fields), None)),
        intake.submit(one(prepared(client, clock, body="2", **fields), None)),
        intake.submit(one(prepared(client, clock, body="3", tier="behavioral"), None)),
    )
    assert {first.body["status"], second.body["status"], third.body["status"]} == {"deferred"}
    older = await (await client.get(f"/v1/notifications/{first.body['id']}")).json()
    assert (older["status"], older["reason"]) == ("dropped", "superseded")
    newer = await (await client.get(f"/v1/notifications/{second.body['id']}")).json()
    assert newer["status"] == "deferred"
    unrelated = await (await client.get(f"/v1/notifications/{third.body['id']}")).json()
    assert unrelated["status"] == "deferred"


async def test_a_retry_after_a_reused_key_in_the_same_batch_still_replays(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    intake = intake_of(client)
    original = prepared(client, clock)
    first = await intake.submit(one(original, claim("k", "fingerprint-a")))
    # the same key with another body, then the original request's retry, in one batch
    reused, retry = await asyncio.gather(
        intake.submit(one(prepared(client, clock, body="changed"), claim("k", "fingerprint-b"))),
        intake.submit(one(original, claim("k", "fingerprint-a"))),
        return_exceptions=True,
    )
    assert isinstance(reused, Conflict) and reused.code == "idempotency_key_reused"
    assert isinstance(retry, Answer), retry
    assert (retry.replayed, retry.body["id"]) == (True, first.body["id"])


async def test_the_writer_outlives_a_failure_while_it_handles_a_failure(
    client: Client, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    intake = intake_of(client)
    real_get = AsyncSession.get
    database_gone = [False]

    async def get(self: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        if database_gone[0]:
            raise ConnectionResetError("the database went away")
        return await real_get(self, *args, **kwargs)

    async def store(_session: AsyncSession, _batch: Sequence[Prepared], **_: Any) -> None:
        # as if another process committed the same key, and then the database went away
        database_gone[0] = True
        raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr(AsyncSession, "get", get)
    monkeypatch.setattr(intake_module, "store_notifications", store)
    failed = await asyncio.wait_for(
        asyncio.gather(
            intake.submit(one(prepared(client, clock), claim("k", "f"))), return_exceptions=True
        ),
        timeout=5,  # a guard: without the fix the request waits for ever
    )
    assert isinstance(failed[0], Exception)
    monkeypatch.undo()  # the database is back: the next request is stored
    answer = await intake.submit(one(prepared(client, clock), None))
    assert answer.status == 202


async def test_a_batch_that_gets_no_connection_is_not_retried_one_by_one(
    client: Client, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    attempts: list[int] = []

    async def store(_session: AsyncSession, batch: Sequence[Prepared], **_: Any) -> None:
        attempts.append(len(batch))
        # each attempt has already waited out the pool's timeout (30 s on SQLite)
        raise sa.exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached")

    monkeypatch.setattr(intake_module, "store_notifications", store)
    intake = intake_of(client)
    results = await asyncio.gather(
        *(intake.submit(one(prepared(client, clock, body=f"n{i}"), None)) for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(result, sa.exc.TimeoutError) for result in results)
    assert attempts == [5]  # one wait for the batch, not one more per request


async def test_an_overloaded_intake_refuses_instead_of_queueing_without_bound(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await register(client)
    intake = Intake(
        session_factory(engine),
        policy=client.app[SERVICES].context.policy,
        clock=clock,
        retention=timedelta(hours=24),
        max_waiting=2,
    )
    intake.start()
    results = await asyncio.gather(
        *(intake.submit(one(prepared(client, clock, body=str(i)), None)) for i in range(4)),
        return_exceptions=True,
    )
    await intake.close()
    assert [type(result).__name__ for result in results] == [
        "Answer",
        "Answer",
        "Unavailable",
        "Unavailable",
    ]
    assert isinstance(results[2], Unavailable) and "overloaded" in results[2].detail
