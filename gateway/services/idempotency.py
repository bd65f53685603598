"""``Idempotency-Key``: a repeated request gets the first answer; the same key with another body
is refused with 409. Keys are scoped to the calling API key and kept for
``retention.idempotency_hours``.

The record of an answer is written in the same transaction as the work it answers (see
:mod:`gateway.services.intake`), so a crash cannot leave one without the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.errors import Conflict, ValidationFailed
from gateway.models import IdempotencyNotification, IdempotencyRecord

MAX_KEY_LENGTH = 255

_records = cast(sa.Table, IdempotencyRecord.__table__)  # type: ignore[attr-defined]
_links = cast(sa.Table, IdempotencyNotification.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's ``Idempotency-Key``, scoped to the calling API key, and the fingerprint of
    the request it was first used with."""

    api_key: str
    key: str
    fingerprint: str

    @property
    def identity(self) -> tuple[str, str]:
        return self.api_key, self.key


def request_fingerprint(method: str, path: str, payload: Any) -> str:
    """sha256 of the request, insensitive to JSON whitespace and key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str) -> str:
    """The key as given; 422 unless it is 1-255 printable characters."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


def replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, dict[str, Any]]:
    """The answer on record; 409 ``idempotency_key_reused`` for a request other than its own."""
    if record.request_sha256 != fingerprint:
        raise Conflict(
            f"Idempotency-Key {record.key!r} was already used with a different request",
            code="idempotency_key_reused",
        )
    return record.response_status, record.response_body


async def live_record(
    session: AsyncSession, claim: IdempotencyClaim, *, now: datetime, retention: timedelta
) -> IdempotencyRecord | None:
    """The record of ``claim``'s key while it is kept; an expired one is deleted (the key may
    be used afresh)."""
    record = await session.get(IdempotencyRecord, claim.identity)
    if record is None or record.created_at > now - retention:
        return record
    await session.delete(record)
    await session.flush()
    return None


def new_record(
    claim: IdempotencyClaim,
    status: int,
    body: dict[str, Any],
    *,
    now: datetime,
    notification_ids: Sequence[str] = (),
) -> tuple[IdempotencyRecord, list[IdempotencyNotification]]:
    """The record of an answer, and its links to the notifications it holds."""
    record = IdempotencyRecord(
        api_key=claim.api_key,
        key=claim.key,
        request_sha256=claim.fingerprint,
        response_status=status,
        response_body=body,
        created_at=now,
    )
    links = [
        IdempotencyNotification(api_key=claim.api_key, key=claim.key, notification_id=id_)
        for id_ in dict.fromkeys(notification_ids)
    ]
    return record, links


async def forget_answers_holding(session: AsyncSession, notification_ids: Sequence[str]) -> None:
    """Delete the records whose answer holds any of ``notification_ids`` (erased ones): a
    retry must not replay a notification that no longer exists."""
    if not notification_ids:
        return
    holding = sa.select(_links.c.api_key, _links.c.key).where(
        _links.c.notification_id.in_(list(notification_ids))
    )
    await session.execute(
        sa.delete(_records).where(sa.tuple_(_records.c.api_key, _records.c.key).in_(holding))
    )


async def purge_expired(session: AsyncSession, *, now: datetime, retention: timedelta) -> int:
    """Delete records older than ``retention``; returns how many."""
    result = await session.execute(
        sa.delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - retention)  # type: ignore[arg-type]
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
