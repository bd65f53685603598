"""Opaque cursors for keyset pagination over (created_at, id), newest first.

A cursor is the position of the last row of a page: its creation time and id, URL-safe base64
encoded so that callers treat it as opaque and pass it back as it is. The next page is read
with an index range (``(created_at, id) < position``), never with OFFSET, so page 1,000 costs
what page 1 does.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from gateway.errors import FieldError, ValidationFailed

_SEPARATOR = "|"


def encode_position(created_at: datetime, row_id: str) -> str:
    """The cursor that continues after the row created at ``created_at`` with id ``row_id``."""
    text = f"{created_at.astimezone(UTC).isoformat()}{_SEPARATOR}{row_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_position(cursor: str, *, field: str = "cursor") -> tuple[datetime, str]:
    """(created_at, id) of a cursor from :func:`encode_position`; 422 naming ``field`` for
    anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = text.split(_SEPARATOR)
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        created_at, row_id = None, ""
    if created_at is None or created_at.tzinfo is None or not row_id:
        message = "not a cursor this endpoint gave out; pass next_cursor back as it is"
        raise ValidationFailed(f"{field}: {message}", errors=[FieldError(field, message)])
    return created_at.astimezone(UTC), row_id
