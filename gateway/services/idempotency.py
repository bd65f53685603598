"""``Idempotency-Key``: a repeated request gets the first answer; the same key with another body
is refused with 409. Keys are scoped to the calling API key and kept for
``retention.idempotency_hours``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.api.errors import Conflict, ValidationFailed
from gateway.db import transaction
from gateway.models import IdempotencyRecord

MAX_KEY_LENGTH = 255

Produce = Callable[[AsyncSession], Awaitable[tuple[int, dict[str, Any]]]]


def request_fingerprint(method: str, path: str, payload: Any) -> str:
    """sha256 of the request, insensitive to JSON whitespace and key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


def replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, dict[str, Any]]:
    if record.request_sha256 != fingerprint:
        raise Conflict(
            f"Idempotency-Key {record.key!r} was already used with a different request",
            code="idempotency_key_reused",
        )
    return record.response_status, record.response_body


async def run_idempotent(
    sessions: async_sessionmaker[AsyncSession],
    *,
    api_key: str,
    key: str | None,
    fingerprint: str,
    now: datetime,
    retention: timedelta,
    produce: Produce,
) -> tuple[int, dict[str, Any], bool]:
    """Run ``produce`` in a transaction, once per (api_key, key).

    Returns (status, body, replayed). The record is written in the same transaction as the
    work, so a crash cannot leave the work done without its record or the other way round.
    """
    if key is None:
        async with transaction(sessions) as session:
            status, body = await produce(session)
        return status, body, False
    try:
        async with transaction(sessions) as session:
            record = await session.get(IdempotencyRecord, (api_key, key))
            if record is not None and record.created_at > now - retention:
                status, body = replay(record, fingerprint)
                return status, body, True
            if record is not None:
                await session.delete(record)
                await session.flush()
            status, body = await produce(session)
            session.add(
                IdempotencyRecord(
                    api_key=api_key,
                    key=key,
                    request_sha256=fingerprint,
                    response_status=status,
                    response_body=body,
                    created_at=now,
                )
            )
        return status, body, False
    except IntegrityError:
        # A concurrent request with the same key committed first: answer as it did.
        async with sessions() as session:
            record = await session.get(IdempotencyRecord, (api_key, key))
        if record is None:
            raise
        status, body = replay(record, fingerprint)
        return status, body, True


async def purge_expired(session: AsyncSession, *, now: datetime, retention: timedelta) -> int:
    result = await session.execute(
        sa.delete(IdempotencyRecord).where(IdempotencyRecord.created_at <= now - retention)  # type: ignore[arg-type]
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
