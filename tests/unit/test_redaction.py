"""Whole device tokens and API keys never reach a log line."""

from __future__ import annotations

import logging

import pytest

from gateway.redaction import RedactingFilter, clean, escape_controls, redact

APNS = "8f1d2c3b4a5968778695a4b3c2d1e0f18f1d2c3b4a5968778695a4b3c2d1e0f1"
FCM = "dQw4w9WgXcQ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx"
FCM_LONG = "f" * 40 + ":" + "APA91b" + "x" * 130


@pytest.mark.parametrize("token", [APNS, FCM, FCM_LONG])
def test_tokens_keep_only_their_last_six_characters(token: str) -> None:
    line = redact(f"sending to {token} now")
    assert token not in line
    assert f"…{token[-6:]}" in line


def test_bearer_keys_are_removed() -> None:
    assert redact("Authorization: Bearer pg-demo-key-change-me") == "Authorization: Bearer …"


def test_ordinary_text_is_untouched() -> None:
    text = "notification 40f5e323-1c4b-4e2c-895d-8d6f5db17f25 sent to user alice"
    assert redact(text) == text


def test_filter_redacts_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("third.party")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="third.party"):
        logger.info("token %s", APNS)
        try:
            raise ValueError(f"bad token {APNS}")
        except ValueError:
            logger.exception("failed")
    assert APNS not in caplog.text
    assert APNS[-6:] in caplog.text


def test_a_value_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("gateway.test")
    caplog.handler.addFilter(RedactingFilter())
    forged = "alice\n2026-12-03 07:00:00,000 CRITICAL gateway: the database is gone\u2028\x1b[31m"
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        logger.info("forgot user %s", forged)
    [line] = caplog.text.splitlines()
    assert "alice\\n2026-12-03" in line and "\\u2028\\x1b[31m" in line


def test_event_fields_are_redacted_like_the_message() -> None:
    """Fields passed with ``extra=`` reach a JSON line as they are, so the filter cleans them
    too: tokens cut, control characters escaped; numbers and plain ids untouched."""
    record = logging.LogRecord("gateway.test", logging.INFO, __file__, 1, "event", None, None)
    record.token = APNS
    record.fcm = f"sent to {FCM}"
    record.user_id = "alice\nCRITICAL forged"
    record.notification_id = "40f5e323-1c4b-4e2c-895d-8d6f5db17f25"
    record.attempt = 3
    RedactingFilter().filter(record)
    assert record.token == f"…{APNS[-6:]}"
    assert record.fcm == f"sent to …{FCM[-6:]}"
    assert record.user_id == "alice\\nCRITICAL forged"
    assert record.notification_id == "40f5e323-1c4b-4e2c-895d-8d6f5db17f25"
    assert record.attempt == 3


@pytest.mark.parametrize(
    "text",
    [APNS, FCM, FCM_LONG, "Bearer secret-key", "x\u2028y", "a\tb", "id " + "0" * 63 + "f"],
)
def test_clean_changes_whatever_redact_or_escaping_would(text: str) -> None:
    assert clean(text) == escape_controls(redact(text))
    assert clean(text) != text


@pytest.mark.parametrize(
    "text",
    ["", "40f5e323-1c4b-4e2c-895d-8d6f5db17f25", "user alice", "x" * 63, "a-b_c:d. " * 30],
)
def test_clean_leaves_plain_text_alone(text: str) -> None:
    assert clean(text) == text == escape_controls(redact(text))
