"""A request body as JSON, within the bounds every stored value must keep.

What the standard library's parser would let through and a database or encoder later chokes on
is refused here, before any handler sees the value:

- a number literal longer than :data:`MAX_NUMBER_LENGTH` characters (no field uses one; Python
  itself refuses to convert integers of over 4,300 digits), a float that overflows to infinity,
  and the ``NaN`` / ``Infinity`` literals (not JSON; PostgreSQL's JSON type refuses them);
- nesting deep enough to exhaust the parser's recursion (free-form values are bounded much
  lower by :data:`gateway.schemas.MAX_JSON_DEPTH`);
- a NUL character or a lone UTF-16 surrogate in any string or key: PostgreSQL cannot store the
  first and no database can encode the second.

The hot path stays cheap: the parser's own hooks see each number, and one regular-expression
search over the text decides whether the decoded strings need a look at all.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from gateway.errors import FieldError, InvalidJson, ValidationFailed

MAX_NUMBER_LENGTH = 32
"""Characters in a number literal: a 64-bit integer needs 20, a double 24 at most."""

# an escape that may decode to NUL or to half of a surrogate pair; pairs are common (an emoji
# escaped by an ASCII-only encoder), so a match only means the decoded strings get a look
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Refused(Exception):
    """Raised from inside the parser's hooks; carries the refusal out of ``json.loads``."""

    def __init__(self, error: InvalidJson | ValidationFailed) -> None:
        super().__init__(error.detail)
        self.error = error


def _number_too_long(text: str) -> _Refused:
    return _Refused(
        ValidationFailed(
            f"a number in the body is {len(text)} characters long; no field takes more than "
            f"{MAX_NUMBER_LENGTH}",
            errors=[FieldError("(body)", f"number longer than {MAX_NUMBER_LENGTH} characters")],
        )
    )


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _number_too_long(text)
    return int(text)


def _finite_float(text: str) -> float:
    if len(text) > MAX_NUMBER_LENGTH:
        raise _number_too_long(text)
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(
            ValidationFailed(
                f"the number {text} is too large to represent",
                errors=[FieldError("(body)", "number out of range")],
            )
        )
    return value


def _no_constant(name: str) -> Any:
    raise _Refused(InvalidJson(f"the request body is not valid JSON: {name} is not a JSON value"))


_DECODER = json.JSONDecoder(
    parse_int=_integer, parse_float=_finite_float, parse_constant=_no_constant
)


def decode_json(raw: bytes) -> Any:
    """``raw`` (UTF-8 JSON) decoded; 400 ``invalid_json`` when it is not JSON (or nests beyond
    what the parser can follow), 422 ``invalid_request`` for a value no field can take."""
    try:
        text = raw.decode("utf-8")
        value = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise InvalidJson("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJson("the request body nests too deeply to read") from None
    except _Refused as refused:
        raise refused.error from None
    if _SUSPECT_ESCAPE.search(text):
        _refuse_unstorable_strings(value)
    return value


def _refuse_unstorable_strings(document: Any) -> None:
    """422 naming the first string (or key) holding a NUL or a lone surrogate."""
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            if _UNSTORABLE.search(value):
                _refuse(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    _refuse(where, key=True)
                pending.append((f"{where}.{key}" if where else key, item))
        elif isinstance(value, list):
            pending.extend(
                (f"{where}.{index}" if where else str(index), item)
                for index, item in enumerate(value)
            )


def _refuse(where: str, *, key: bool = False) -> NoReturn:
    field = where or "(body)"
    what = "a key" if key else "a string"
    message = f"{what} holds a NUL character or a lone UTF-16 surrogate, which cannot be stored"
    raise ValidationFailed(f"{field}: {message}", errors=[FieldError(field, message)])
