"""Group commit for sending notifications: concurrent requests share one transaction.

Each request is checked on its own first (:func:`~gateway.services.acceptance.
prepare_notification`: no database), then handed to the :class:`Intake` as a
:class:`Submission`: one notification (``POST /v1/notifications``) or a list of them (the batch
endpoint), each item prepared or already refused. The writer stores everything waiting in one
transaction (one lock statement, one snapshot of the users, one flush, one commit) and answers
each submission only after that commit, so a 202 still means the notification is stored. An
item can also be refused while it is stored (a ``send_at_local`` needs the user's zone, which
only the snapshot knows): it answers with its error and the rest of the group is stored. A
group forms by itself while the previous one commits; a lone request is a group of one and
never waits for a timer. When a group fails, its submissions are stored again one by one, so a
bad one can only fail itself (unless no connection could be had: that fails them all at once).

The ``Idempotency-Key`` of a submission is honoured inside the group: its record is read and
written in the group's transaction, and the same key twice in one group answers the second as
a replay of the first. Only answers that stored something are recorded: a refused request may
be retried once its problem is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.db import transaction
from gateway.errors import GatewayError, Unavailable
from gateway.models import IdempotencyNotification, IdempotencyRecord
from gateway.schemas import NotificationOut
from gateway.services.acceptance import Prepared, store_notifications
from gateway.services.idempotency import IdempotencyClaim, live_record, new_record, replay
from policies import PolicySettings

log = logging.getLogger(__name__)

MAX_BATCH = 64  # submissions per transaction: bounds how long one commit holds users' locks
# Submissions waiting to be stored before new ones are refused with 503: several seconds of work
# at the measured rates, so a burst is absorbed but an overload sheds load instead of memory.
MAX_WAITING = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one submission, and what it stored (empty for a replay)."""

    status: int
    body: dict[str, Any]
    replayed: bool
    stored: tuple[NotificationOut, ...] = ()


@dataclass(frozen=True, slots=True)
class Submission:
    """What one request asks to store.

    ``items`` are prepared notifications or the errors that refused them. ``batch`` says the
    answer is ``200 {"results": [...]}`` with one notification or problem per item; otherwise
    there is one item and the answer is ``202`` with the notification (or its error raised).
    """

    items: tuple[Prepared | GatewayError, ...]
    claim: IdempotencyClaim | None = None
    batch: bool = False

    @property
    def prepared(self) -> list[Prepared]:
        return [item for item in self.items if isinstance(item, Prepared)]

    def answer(self, stored: Sequence[NotificationOut | GatewayError]) -> Answer | GatewayError:
        """The answer once ``stored`` (for each prepared item, in order, the notification
        stored or the error that refused it while storing) is committed."""
        outcomes = iter(stored)
        if not self.batch:
            (item,) = self.items
            outcome = item if isinstance(item, GatewayError) else next(outcomes)
            if isinstance(outcome, GatewayError):
                return outcome
            return Answer(202, outcome.model_dump(mode="json"), False, (outcome,))
        results: list[dict[str, Any]] = []
        for index, item in enumerate(self.items):
            outcome = item if isinstance(item, GatewayError) else next(outcomes)
            if isinstance(outcome, GatewayError):
                results.append(_item_problem(outcome, index))
            else:
                results.append(outcome.model_dump(mode="json"))
        notifications = tuple(item for item in stored if isinstance(item, NotificationOut))
        return Answer(200, {"results": results}, False, notifications)


def _item_problem(error: GatewayError, index: int) -> dict[str, Any]:
    problem = error.problem()
    for field_error in problem.get("errors", []):
        field_error["field"] = f"notifications.{index}.{field_error['field']}"
    return problem


@dataclass(slots=True)
class _Waiting:
    submission: Submission
    future: asyncio.Future[Answer]
    result: Answer | GatewayError | None = field(default=None)


class Intake:
    """Stores submissions in groups from one writer task; see the module text."""

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
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
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

    async def submit(self, submission: Submission) -> Answer:
        """Store ``submission`` (or replay its key's answer); returns once committed. Raises
        the :class:`GatewayError` of a refused single request."""
        if self._closed or self._writer is None or self._writer.done():
            raise Unavailable("the gateway is shutting down; retry on another instance")
        if self._queue.qsize() >= self._max_waiting:
            raise Unavailable(
                f"{self._max_waiting} requests are already waiting to be stored; "
                "the gateway is overloaded, retry shortly",
                retry_after=1,
            )
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(submission, future))
        return await future

    async def _write(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < self._max_batch and not self._queue.empty():
                group.append(self._queue.get_nowait())
            try:
                await self._store(group)
            except Exception as error:
                # The writer must outlive any failure: a dead writer would leave these requests
                # waiting for ever and refuse every later one until the process restarts.
                log.exception("storing a group of %d submissions failed", len(group))
                for waiting in group:
                    _settle(waiting.future, error)
            finally:
                for _ in group:
                    self._queue.task_done()

    async def _store(self, group: Sequence[_Waiting]) -> None:
        try:
            async with transaction(self._sessions) as session:
                await self._store_in(session, group, now=self._clock())
        except Exception as error:
            if len(group) > 1 and not _database_unreachable(error):
                log.warning(
                    "storing a group of %d submissions failed (%s); storing them one by one",
                    len(group),
                    type(error).__name__,
                )
                for waiting in group:
                    await self._store([waiting])
                return
            for waiting in group:
                _settle(waiting.future, await self._after_failure(waiting.submission, error))
            return
        for waiting in group:
            assert waiting.result is not None  # _store_in answers every submission
            _settle(waiting.future, waiting.result)

    async def _store_in(
        self, session: AsyncSession, group: Sequence[_Waiting], *, now: datetime
    ) -> None:
        records: dict[tuple[str, str], IdempotencyRecord] = {}
        repeats: list[_Waiting] = []  # their key came earlier in the group
        to_store: list[_Waiting] = []
        for waiting in group:
            claim = waiting.submission.claim
            if claim is None:
                to_store.append(waiting)
            elif claim.identity in records or any(
                other.submission.claim is not None
                and other.submission.claim.identity == claim.identity
                for other in to_store
            ):
                repeats.append(waiting)
            else:
                record = await live_record(session, claim, now=now, retention=self._retention)
                if record is not None:
                    records[claim.identity] = record
                    waiting.result = _replayed(record, claim)
                else:
                    to_store.append(waiting)

        links_to_add: list[IdempotencyNotification] = []
        prepared = [item for waiting in to_store for item in waiting.submission.prepared]
        stored = await store_notifications(session, prepared, policy=self._policy, now=now)
        offset = 0
        for waiting in to_store:
            count = len(waiting.submission.prepared)
            answer = waiting.submission.answer(stored[offset : offset + count])
            offset += count
            waiting.result = answer
            claim = waiting.submission.claim
            if claim is not None and isinstance(answer, Answer):
                new, links = new_record(
                    claim,
                    answer.status,
                    answer.body,
                    now=now,
                    notification_ids=[notification.id for notification in answer.stored],
                )
                session.add(new)
                links_to_add += links
                records[claim.identity] = new
        if links_to_add:
            await session.flush()  # the records before the links that reference them
            session.add_all(links_to_add)

        for waiting in repeats:
            claim = waiting.submission.claim
            assert claim is not None
            record = records.get(claim.identity)
            if record is None:  # the first use of the key was refused: nothing on record
                waiting.result = waiting.submission.answer([])
                if isinstance(waiting.result, Answer):  # a batch of refusals only
                    continue
            else:
                # against the record, not the first request's answer: that one may have been
                # a 409 for another body, while this one is a retry of the request on record
                waiting.result = _replayed(record, claim)

    async def _after_failure(self, submission: Submission, error: Exception) -> Answer | Exception:
        """A submission stored alone failed. If a concurrent request with the same key
        committed first, answer as it did; otherwise the submission fails with the error."""
        claim = submission.claim
        if isinstance(error, IntegrityError) and claim is not None:
            try:
                async with self._sessions() as session:
                    record = await session.get(IdempotencyRecord, claim.identity)
            except Exception:  # the request fails with its own error, the writer goes on
                log.warning("could not read an idempotency key after a conflict")
                record = None
            if record is not None:
                return _replayed(record, claim)
        log.error("storing %d notifications failed", len(submission.prepared), exc_info=error)
        return error


def _database_unreachable(error: Exception) -> bool:
    """Whether ``error`` says no connection could be had (the pool's timeout, a failed or lost
    connection) rather than something about the group's requests. Storing those one by one
    would wait out the same timeout once per request while every later request queues."""
    return isinstance(error, PoolTimeout | OSError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def _replayed(record: IdempotencyRecord, claim: IdempotencyClaim) -> Answer | GatewayError:
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
