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
from gateway.schemas import is_resource_id, representable_instant
from tokens.models import UTCDateTime

_INT64 = range(-(2**63), 2**63)


def encode_cursor(at: datetime, row_id: Any) -> str:
    """The cursor of a page that ends at the row (``at``, ``row_id``)."""
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, *, id_type: type[int] | type[str] | None = None
) -> tuple[datetime, Any]:
    """(``at``, ``row_id``) of a cursor from :func:`encode_cursor`, the id of the type the list
    uses (``None``: a 64-bit integer or an id string); 422 for anything else.

    A cursor comes back from the caller, so it is input like any other: a forged one must not
    reach a query with an instant UTC cannot hold, an id of the wrong type or a NUL.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        instant = representable_instant(datetime.fromisoformat(at))
        if not _is_row_id(row_id) or (id_type is not None and type(row_id) is not id_type):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not one this gateway handed out; pass next_cursor as given",
            errors=[FieldError("cursor", "invalid cursor")],
        ) from None
    return instant, row_id


def older_than(
    at: Any, row_id: Any, cursor: str, *, id_type: type[int] | type[str] | None = None
) -> sa.ColumnElement[bool]:
    """Rows after ``cursor`` in newest-first order: ``(at, row_id) < the cursor's``. One
    row-value comparison, which both databases read as a range of an index on (..., at, id);
    the equivalent OR would scan every newer row."""
    after_at, after_id = decode_cursor(cursor, id_type=id_type)
    return sa.tuple_(at, row_id) < sa.tuple_(
        sa.literal(after_at, UTCDateTime()), sa.literal(after_id)
    )


def _is_row_id(value: Any) -> bool:
    if type(value) is int:  # not a bool
        return value in _INT64
    return isinstance(value, str) and is_resource_id(value)
