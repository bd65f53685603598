"""What provider answers do to tokens and statuses (token outcomes; issue 4
"Outcomes"): dead tokens are marked ``invalid`` with the reason and time, other errors never
touch the token, and a notification ends ``sent`` when at least one device got it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from gateway.delivery.worker import ProviderLookup
from gateway.providers.base import Platform, Provider, PushMessage
from gateway.simulators.apns import ApnsReply
from gateway.simulators.fcm import Fault
from tests.pipeline.conftest import Pipeline, StartPipeline
from tokens.feedback import TokenOutcome, apply_report
from tokens.reports import DeliveryReport, Outcome


async def test_apns_unregistered_invalidates_the_token(pipeline: Pipeline) -> None:
    device = await pipeline.register()
    pipeline.clock.advance(hours=2)
    pipeline.apns.unregister(device["token"], since=pipeline.clock.now - timedelta(hours=1))
    notification = await pipeline.send(tier="transactional")

    await pipeline.deliver()

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "failed"  # its only device did not get it
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["error"]) == ("invalid_token", "Unregistered")
    stored = (await pipeline.devices())[device["token"]]
    assert (stored["status"], stored["invalid_reason"]) == ("invalid", "Unregistered")
    assert datetime.fromisoformat(stored["invalidated_at"]) == pipeline.clock.now


async def test_token_registered_again_after_the_410_timestamp_stays_active(
    pipeline: Pipeline,
) -> None:
    device = await pipeline.register()
    uninstalled_at = pipeline.clock.now + timedelta(minutes=30)
    pipeline.clock.advance(hours=1)
    # the app was installed again: the same token registers after Apple's timestamp
    again = await pipeline.register(token=device["token"])
    assert again["id"] == device["id"]
    pipeline.apns.unregister(device["token"], since=uninstalled_at)
    notification = await pipeline.send(tier="transactional")

    await pipeline.deliver()

    [delivery] = (await pipeline.notification(notification["id"]))["deliveries"]
    assert delivery["status"] == "invalid_token"
    stored = (await pipeline.devices())[device["token"]]
    assert (stored["status"], stored["invalid_reason"]) == ("active", None)


@pytest.mark.parametrize(
    ("platform", "reason"),
    [
        ("ios", "BadDeviceToken"),
        ("ios", "DeviceTokenNotForTopic"),
        ("ios", "ExpiredToken"),
        ("android", "UNREGISTERED"),
        ("android", "SENDER_ID_MISMATCH"),
        ("android", "INVALID_ARGUMENT"),
    ],
)
async def test_dead_token_answers_invalidate(
    pipeline: Pipeline, platform: str, reason: str
) -> None:
    device = await pipeline.register(platform=platform)
    if platform == "ios":
        status = 410 if reason == "ExpiredToken" else 400
        pipeline.apns.script(ApnsReply(status, reason), token=device["token"])
    else:
        pipeline.fcm.fail_token(device["token"], reason)
    notification = await pipeline.send(tier="transactional")

    assert (await pipeline.deliver()).outcomes == {Outcome.TOKEN_DEAD: 1}

    [delivery] = (await pipeline.notification(notification["id"]))["deliveries"]
    assert delivery["status"] == "invalid_token"
    stored = (await pipeline.devices())[device["token"]]
    assert stored["status"] == "invalid"
    assert stored["invalid_reason"] == reason
    # never sent to again
    again = await pipeline.send(tier="transactional")
    assert (again["status"], again["reason"]) == ("dropped", "no_active_devices")


@pytest.mark.parametrize(
    ("platform", "answer"),
    [
        ("ios", ApnsReply(403, "Forbidden")),
        ("ios", ApnsReply(413, "PayloadTooLarge")),
        ("ios", ApnsReply(500, "InternalServerError")),
        ("ios", ApnsReply(400, "BadTopic")),
        ("android", Fault(error="THIRD_PARTY_AUTH_ERROR")),
        ("android", Fault(error="INTERNAL")),
        ("android", Fault(error="INVALID_ARGUMENT", field="message.android.ttl")),
    ],
)
async def test_other_errors_never_touch_the_token(
    start_pipeline: StartPipeline, platform: str, answer: ApnsReply | Fault
) -> None:
    pipeline = await start_pipeline(max_attempts=2, breaker_failure_threshold=1000)
    device = await pipeline.register(platform=platform)
    if isinstance(answer, ApnsReply):
        pipeline.apns.script(answer, token=device["token"])
    else:
        pipeline.fcm.fail_token(device["token"], answer)
    notification = await pipeline.send(tier="transactional")

    for _ in range(2):  # retryable ones use up their two attempts
        await pipeline.deliver()
        if await pipeline.pending_deliveries():
            await pipeline.advance_to_next_attempt()

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "failed"
    [delivery] = body["deliveries"]
    assert delivery["status"] == "failed" and delivery["error"]
    stored = (await pipeline.devices())[device["token"]]
    assert (stored["status"], stored["invalid_reason"]) == ("active", None)


async def test_sent_when_at_least_one_device_got_it(pipeline: Pipeline) -> None:
    dead = await pipeline.register()
    alive = await pipeline.register(platform="android")
    pipeline.apns.script(ApnsReply(410, "Unregistered"), token=dead["token"])
    notification = await pipeline.send(tier="transactional")

    await pipeline.deliver()

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    statuses = {d["device_id"]: d["status"] for d in body["deliveries"]}
    assert statuses == {dead["id"]: "invalid_token", alive["id"]: "sent"}


class AnswerTogether:
    """Wraps the providers so that every platform's answers come back at the same moment: the
    two groups of a round then record their results in overlapping transactions."""

    def __init__(self, providers: ProviderLookup, platforms: int) -> None:
        self.providers = providers
        self.platforms = platforms
        self.answered = 0
        self.all_answered = asyncio.Event()

    def __call__(self, app: str, platform: Platform) -> Provider:
        inner = self.providers(app, platform)
        outer = self

        class Together:
            async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
                reports = await inner.send(messages)
                outer.answered += 1
                if outer.answered == outer.platforms:
                    outer.all_answered.set()
                await outer.all_answered.wait()
                return reports

            async def close(self) -> None:
                return None

        return Together()


async def test_every_notification_finishes_when_its_devices_finish_together(
    pipeline: Pipeline,
) -> None:
    """Each notification's iOS and Android deliveries end in the same round, recorded by two
    concurrent transactions; neither may leave the notification ``queued``."""
    users = [f"user-{index}" for index in range(4)]
    for user in users:
        await pipeline.register(user)
        await pipeline.register(user, platform="android")
    for _ in range(3):  # the interleaving is up to the event loop: give it several chances
        sent = [await pipeline.send(user_id=user, tier="transactional") for user in users]
        pipeline.worker.providers = AnswerTogether(pipeline.providers, platforms=2)

        result = await pipeline.worker.run_round()

        assert result.outcomes == {Outcome.SENT: 2 * len(users)}
        statuses = [(await pipeline.notification(n["id"]))["status"] for n in sent]
        assert statuses == ["sent"] * len(users)


async def test_a_waiting_delivery_is_not_sent_to_a_token_invalidated_meanwhile(
    pipeline: Pipeline,
) -> None:
    """Another send's feedback killed the token while this delivery waited: it is not sent."""
    device = await pipeline.register()
    notification = await pipeline.send(tier="transactional")
    async with pipeline.sessions() as session, session.begin():
        outcome = await apply_report(
            session,
            device["id"],
            DeliveryReport(Outcome.TOKEN_DEAD, reason="BadDeviceToken", status=400),
            now=pipeline.clock.now,
            actor="apns:400 BadDeviceToken",
        )
    assert outcome is TokenOutcome.INVALIDATED

    await pipeline.deliver()

    assert pipeline.apns.requests == []
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "failed"
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["error"]) == ("failed", "device_invalid: BadDeviceToken")


async def test_a_waiting_delivery_is_not_sent_once_permission_is_denied(
    pipeline: Pipeline,
) -> None:
    device = await pipeline.register()
    notification = await pipeline.send(tier="transactional")
    await pipeline.register(token=device["token"], permission="denied")  # the next app launch

    await pipeline.deliver()

    assert pipeline.apns.requests == []
    [delivery] = (await pipeline.notification(notification["id"]))["deliveries"]
    assert (delivery["status"], delivery["error"]) == ("failed", "permission_denied")
