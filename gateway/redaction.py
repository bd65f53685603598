"""Keep whole device tokens and API keys out of the logs, and keep every log line one line.

pushgate's own log lines carry only a token's last 6 characters; this filter is the second
line of defence for third-party libraries (aioapns, httpx, firebase-admin) and tracebacks.
It also escapes control characters in a message, so a value that reached a log line (a user
id, a header) cannot forge a line of its own.
"""

from __future__ import annotations

import logging
import re

# APNs tokens: 64+ hex characters. FCM registration tokens: "<instance id>:<APA91b...>", or any
# 100+ character run of the FCM alphabet. Bearer credentials: whatever follows "Bearer ".
_PATTERNS = (
    re.compile(r"\b[0-9a-fA-F]{58,}([0-9a-fA-F]{6})\b"),
    re.compile(r"\b[A-Za-z0-9_-]{6,}:APA91[A-Za-z0-9_-]{6,}([A-Za-z0-9_-]{6})\b"),
    re.compile(r"[A-Za-z0-9_:.-]{94,}([A-Za-z0-9_:.-]{6})"),
)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
# C0 and C1 controls (newlines included) and the Unicode line and paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# What any of the above needs to match at all: a control character, a run of 64 or more token
# characters (where 64 hex digits or a 100-character token would be), ":APA91", or the word
# "bearer". Text with none (ids, names, numbers: most of a log line) is left as it is without
# running every pattern. Runs are tried from their first character only, so this stays linear.
_SUSPECT = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029]|(?<![A-Za-z0-9_:.-])[A-Za-z0-9_:.-]{64}|:APA91|(?i:bearer)"
)
_SHORTEST_RUN = 64

STANDARD_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}
"""The attributes every log record has; any other one is a field passed with ``extra=``."""


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def clean(text: str) -> str:
    """``text`` fit for a log line: tokens and keys cut (:func:`redact`), control characters
    escaped (:func:`escape_controls`)."""
    if len(text) < _SHORTEST_RUN:
        # too short for the runs the patterns cut; the FCM pattern needs ":APA91" anyway
        plain = text.isprintable() and ":APA91" not in text and "bearer" not in text.lower()
    else:
        plain = _SUSPECT.search(text) is None
    return text if plain else escape_controls(redact(text))


def redact(text: str) -> str:
    """``text`` with every token-like run cut to ``…`` plus its last 6 characters."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: "…" + match.group(1), text)
    return _BEARER.sub(r"\1…", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (arguments merged) with :func:`redact`, and every text
    field passed with ``extra=`` (the JSON format writes those as they are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        fields = record.__dict__
        for name, value in fields.items():
            if isinstance(value, str) and name not in STANDARD_RECORD_FIELDS:
                fields[name] = clean(value)
        return True


def install(handler: logging.Handler) -> None:
    handler.addFilter(RedactingFilter())
