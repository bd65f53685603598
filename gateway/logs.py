"""How the gateway logs: plain text or one JSON object per line, at the configured level, with
the request id of the work in hand, and the redaction filter on every handler.

The events an operator follows (a notification accepted, a release decision, a delivery's
outcome) pass their facts as fields with ``extra=``: the JSON format writes each field as a
key of the line's object, and their text message says the same in words. The request id of
the HTTP request being served lives in :data:`REQUEST_ID`, a context variable, so every line
logged while serving it names it without each call passing it along; work that leaves the
request's task (the group-committing writer, the delivery worker) passes the id as a field.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from gateway import redaction

REQUEST_ID: ContextVar[str | None] = ContextVar("pushgate_request_id", default=None)
"""The id of the HTTP request this task serves (``X-Request-Id``, or one made up)."""

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Per-request and per-tick chatter: the metrics cover request volume and job runs.
QUIET_LOGGERS = (
    "aiohttp.access",
    "aiosqlite",  # a line per statement at debug
    "apscheduler",
    "httpx",
    "alembic.runtime.migration",
)


def current_request_id() -> str | None:
    """The request id of the work in hand, or None outside a request."""
    return REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Names the current request on each record that does not name one itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, and the request id when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} (request_id={request_id})" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``process``
    (the pid, which tells apart the processes of ``serve --processes N``), ``event``
    (for the events listed in the README), ``request_id`` when there is one, ``message``, the
    event's other fields, and ``exception`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            name: value
            for name, value in record.__dict__.items()
            if name not in redaction.STANDARD_RECORD_FIELDS
        }
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.process,
        }
        if "event" in fields:
            document["event"] = fields.pop("event")
        if fields.get("request_id") is not None:
            document["request_id"] = fields["request_id"]
        fields.pop("request_id", None)
        document["message"] = record.getMessage()
        document.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))
        # JSON allows these two raw, but some readers take them for line ends
        return line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def configure_logging(*, level: str = "info", log_format: str = "text") -> None:
    """Send the process's logs to stderr at ``level`` (``debug`` ... ``error``) as
    ``log_format`` (``text`` or ``json``), through one handler that carries the request-id and
    redaction filters. Replaces whatever handlers the root logger had."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    install_filters(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    scheduler = logging.getLogger("apscheduler.scheduler")
    if skip_overlapping_run_warnings not in scheduler.filters:
        scheduler.addFilter(skip_overlapping_run_warnings)


def install_filters(handler: logging.Handler) -> None:
    """What every handler of the gateway carries: the request id, then the redaction (which
    also covers the fields)."""
    handler.addFilter(RequestIdFilter())
    redaction.install(handler)


def skip_overlapping_run_warnings(record: logging.LogRecord) -> bool:
    """Drop APScheduler's "skipped: maximum number of running instances" warning: the release
    job drains every due batch in one run (``max_instances=1``), so while a large release runs
    each poll tick is skipped by design, and would otherwise log a warning per tick."""
    return "maximum number of running instances" not in str(record.msg)
