"""Group commit for ``POST /v1/notifications``: concurrent requests share one transaction.

Each request is checked on its own first (:func:`~gateway.notifications.prepare_notification`:
no database), then handed to the :class:`Intake`. Its writer stores everything waiting in one
transaction (one lock statement, one snapshot of the users, one flush, one commit) and answers
each request only after that commit, so a 202 still means the notification is stored. A batch
forms by itself while the previous one commits; a lone request is a batch of one and never
waits for a timer. When a batch fails, its requests are stored again one by one, so a bad
request can only fail itself (unless no connection could be had: that fails them all at once).

The ``Idempotency-Key`` of a request is honoured inside the batch: its record is read and
written in the batch's transaction, and the same key twice in one batch answers the second
request as a replay of the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.api.errors import GatewayError, ServiceUnavailable
from gateway.api.schemas import NotificationOut
from gateway.db import transaction
from gateway.idempotency import replay
from gateway.models import IdempotencyRecord
from gateway.notifications import Prepared, store_notifications
from policies import PolicySettings

log = logging.getLogger(__name__)

MAX_BATCH = 64  # requests per transaction: bounds how long one commit holds the users' locks
# Requests waiting to be stored before new ones are refused with 503: several seconds of work at
# the measured rates, so a burst is absorbed but an overload sheds load instead of memory.
MAX_WAITING = 10_000


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's ``Idempotency-Key``, scoped to the calling API key."""

    api_key: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool
    notification: NotificationOut | None = None  # the stored one; None for a replay


@dataclass(slots=True)
class _Submission:
    prepared: Prepared
    claim: IdempotencyClaim | None
    future: asyncio.Future[Answer]


class Intake:
    """Stores submitted notifications in batches from one writer task; see the module text."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: PolicySettings,
        clock: Callable[[], datetime],
        retention: timedelta,
        max_batch: int = MAX_BATCH,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._clock = clock
        self._retention = retention
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write(), name="intake")

    async def close(self) -> None:
        """Refuse new submissions, store the ones already waiting, and stop the writer."""
        self._closed = True
        await self._queue.join()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def submit(self, prepared: Prepared, claim: IdempotencyClaim | None) -> Answer:
        """Store one notification (or replay its key's answer); returns once committed."""
        if self._closed or self._writer is None or self._writer.done():
            raise ServiceUnavailable("the gateway is shutting down; retry on another instance")
        if self._queue.qsize() >= self._max_waiting:
            raise ServiceUnavailable(
                f"{self._max_waiting} notifications are already waiting to be stored; "
                "the gateway is overloaded, retry shortly"
            )
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Submission(prepared, claim, future))
        return await future

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._store(batch)
            except Exception as error:
                # The writer must outlive any failure: a dead writer would leave these requests
                # waiting for ever and refuse every later one until the process restarts.
                log.exception("storing a batch of %d notifications failed", len(batch))
                for submission in batch:
                    _settle(submission.future, error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _store(self, batch: Sequence[_Submission]) -> None:
        try:
            async with transaction(self._sessions) as session:
                results = await self._store_in(session, batch, now=self._clock())
        except Exception as error:
            if len(batch) > 1 and not _database_unreachable(error):
                log.warning(
                    "storing a batch of %d notifications failed (%s); storing them one by one",
                    len(batch),
                    type(error).__name__,
                )
                for submission in batch:
                    await self._store([submission])
                return
            for submission in batch:
                _settle(submission.future, await self._after_failure(submission, error))
            return
        for submission, result in zip(batch, results, strict=True):
            _settle(submission.future, result)

    async def _store_in(
        self, session: AsyncSession, batch: Sequence[_Submission], *, now: datetime
    ) -> list[Answer | Exception]:
        results: list[Answer | Exception | None] = [None] * len(batch)
        records: dict[tuple[str, str], IdempotencyRecord] = {}
        keys_seen: set[tuple[str, str]] = set()
        repeats: list[int] = []  # indexes of requests whose key came earlier in the batch
        to_store: list[int] = []
        for index, submission in enumerate(batch):
            claim = submission.claim
            if claim is None:
                to_store.append(index)
                continue
            identity = (claim.api_key, claim.key)
            if identity in keys_seen:
                repeats.append(index)
                continue
            keys_seen.add(identity)
            record = await session.get(IdempotencyRecord, identity)
            if record is not None and record.created_at > now - self._retention:
                results[index] = _replayed(record, claim)
                records[identity] = record
                continue
            if record is not None:  # expired: the key may be used afresh
                await session.delete(record)
                await session.flush()
            to_store.append(index)

        prepared = [batch[index].prepared for index in to_store]
        stored = await store_notifications(session, prepared, policy=self._policy, now=now)
        for index, notification in zip(to_store, stored, strict=True):
            body = notification.model_dump(mode="json")
            results[index] = Answer(202, body, replayed=False, notification=notification)
            claim = batch[index].claim
            if claim is not None:
                record = IdempotencyRecord(
                    api_key=claim.api_key,
                    key=claim.key,
                    request_sha256=claim.fingerprint,
                    response_status=202,
                    response_body=body,
                    created_at=now,
                )
                session.add(record)
                records[(claim.api_key, claim.key)] = record

        for index in repeats:
            claim = batch[index].claim
            assert claim is not None
            # against the record, not the first request's answer: that one may have been a
            # 409 for another body, while this one is a retry of the request on record
            results[index] = _replayed(records[(claim.api_key, claim.key)], claim)
        answered = [result for result in results if result is not None]
        assert len(answered) == len(batch)  # every submission has its answer
        return answered

    async def _after_failure(self, submission: _Submission, error: Exception) -> Answer | Exception:
        """A request stored alone failed. If a concurrent request with the same key committed
        first, answer as it did; otherwise the request fails with the error."""
        claim = submission.claim
        if isinstance(error, IntegrityError) and claim is not None:
            try:
                async with self._sessions() as session:
                    record = await session.get(IdempotencyRecord, (claim.api_key, claim.key))
            except Exception:  # the request fails with its own error, the writer goes on
                log.warning("could not read idempotency key %r after a conflict", claim.key)
                record = None
            if record is not None:
                return _replayed(record, claim)
        log.error(
            "storing a notification for user %s failed",
            submission.prepared.request.user_id,
            exc_info=error,
        )
        return error


def _database_unreachable(error: Exception) -> bool:
    """Whether ``error`` says no connection could be had (the pool's timeout, a failed or lost
    connection) rather than something about the batch's requests. Storing those one by one
    would wait out the same timeout once per request while every later request queues."""
    return isinstance(error, PoolTimeout | OSError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def _replayed(record: IdempotencyRecord, claim: IdempotencyClaim) -> Answer | Exception:
    try:
        status, body = replay(record, claim.fingerprint)
    except GatewayError as conflict:
        return conflict
    return Answer(status, body, replayed=True)


def _settle(future: asyncio.Future[Answer], result: Answer | Exception) -> None:
    if future.done():  # the request was cancelled (its client went away); the work stands
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
