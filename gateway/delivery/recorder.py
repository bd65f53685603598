"""Delivery results written as they arrive, group-committed.

A provider's answer is only safe once it is committed: until then a crash would send the
delivery again. So each result is handed to the :class:`ResultRecorder` the moment it arrives,
instead of waiting for the rest of its round. One writer task commits everything waiting in
one transaction, and the results that arrive meanwhile form the next group: a lone result is
a group of one and waits for no timer, a burst is committed a few hundred at a time. The
window in which an answered delivery is not yet recorded is one commit long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway.delivery.queue import DeliveryQueue, Recorded, Result

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """What happened to one result: written (the lease was still this worker's), and whether
    it finished its notification."""

    written: bool
    finished: bool


@dataclass(slots=True)
class _Waiting:
    result: Result
    future: asyncio.Future[RecordOutcome]


class ResultRecorder:
    """Group-commits results through :meth:`DeliveryQueue.record`; see the module text.

    ``on_recorded`` is called after each commit with what it wrote (metrics, the breaker).
    """

    MAX_GROUP = 500  # results per transaction: bounds how long one commit holds row locks

    def __init__(
        self,
        queue: DeliveryQueue,
        clock: Clock,
        on_recorded: Callable[[Recorded], None],
    ) -> None:
        self._queue = queue
        self._clock = clock
        self._on_recorded = on_recorded
        self._waiting: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, result: Result) -> RecordOutcome:
        """Hand ``result`` over; returns once it is committed (or raises what the commit
        raised: the delivery then stays leased and is taken up again when the lease ends)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="delivery-recorder"
            )
        future: asyncio.Future[RecordOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait(_Waiting(result, future))
        return await future

    async def close(self) -> None:
        """Commit what is waiting, then stop the writer."""
        await self._waiting.join()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _write(self) -> None:
        while True:
            group = [await self._waiting.get()]
            while len(group) < self.MAX_GROUP and not self._waiting.empty():
                group.append(self._waiting.get_nowait())
            try:
                recorded = await self._queue.record([w.result for w in group], self._clock())
            except Exception as error:
                # the writer outlives a failed commit: these results' rounds see the error
                for waiting in group:
                    if not waiting.future.done():
                        waiting.future.set_exception(error)
            else:
                self._settle(group, recorded)
            finally:
                for _ in group:
                    self._waiting.task_done()

    def _settle(self, group: list[_Waiting], recorded: Recorded) -> None:
        try:
            self._on_recorded(recorded)
        except Exception:  # counting must never lose a committed result
            log.exception("counting recorded delivery results failed")
        written = {id(result) for result in recorded.results}
        finished = set(recorded.finished)
        for waiting in group:
            notification_id = waiting.result.item.notification.id
            ends_it = notification_id in finished
            finished.discard(notification_id)  # one result per notification takes the credit
            if not waiting.future.done():
                waiting.future.set_result(RecordOutcome(id(waiting.result) in written, ends_it))
