"""Keyset pagination: an opaque cursor naming the last row of a page.

Lists are read newest first by a sort key and a unique id, and the next page starts strictly
after the cursor's (key, id): no OFFSET, so a page costs the same at row 10 and at row
10,000,000, and rows added meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gateway.errors import FieldError, ValidationFailed
from tokens.models import UTCDateTime


def encode_cursor(at: datetime, row_id: Any) -> str:
    """The cursor of a page that ends at the row (``at``, ``row_id``)."""
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, Any]:
    """(``at``, ``row_id``) of a cursor from :func:`encode_cursor`; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        instant = datetime.fromisoformat(at)
        if instant.tzinfo is None or not isinstance(row_id, int | str):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not one this gateway handed out; pass next_cursor as given",
            errors=[FieldError("cursor", "invalid cursor")],
        ) from None
    return instant, row_id


def older_than(at: Any, row_id: Any, cursor: str) -> sa.ColumnElement[bool]:
    """Rows after ``cursor`` in newest-first order: ``(at, row_id) < the cursor's``. One
    row-value comparison, which both databases read as a range of an index on (..., at, id);
    the equivalent OR would scan every newer row."""
    after_at, after_id = decode_cursor(cursor)
    return sa.tuple_(at, row_id) < sa.tuple_(
        sa.literal(after_at, UTCDateTime()), sa.literal(after_id)
    )
