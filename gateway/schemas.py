"""The shapes of what the gateway takes and gives: request and response bodies.

These pydantic models validate every request (the services parse with them, whoever calls) and
are also the source of ``/openapi.json``, so the published contract cannot drift from what the
code accepts. Validation failures that have an error code of their own (``invalid_timezone``,
``invalid_token``) are raised as :class:`PydanticCustomError` with that code as the error type,
and :func:`validation_error` turns them into the matching :mod:`gateway.errors` error.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.config import parse_hhmm, validate_timezone_name
from gateway.errors import FieldError, InvalidTimezone, InvalidToken, ValidationFailed
from gateway.providers.registry import provider_for
from policies import parse_send_at_local
from policies.tiers import Tier
from tokens.models import Environment, Permission, Platform

M = TypeVar("M", bound=BaseModel)

MAX_TTL_SECONDS = 28 * 86_400  # FCM's maximum; APNs stores for about 30 days
MAX_TOKEN_LENGTH = 4096
_LOCALE = re.compile(r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*")


def _timezone(value: str) -> str:
    try:
        return validate_timezone_name(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_timezone", str(exc)) from None


def _hhmm(value: str) -> str:
    try:
        parse_hhmm(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_request", str(exc)) from None
    return value


def _send_at_local(value: str) -> str:
    try:
        parse_send_at_local(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_request", str(exc)) from None
    return value


def _locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise PydanticCustomError("invalid_request", "expected a locale such as 'en' or 'pt-BR'")
    return value


def check_device_token(platform: Platform, token: str) -> str:
    """Raise ``invalid_token`` unless ``token`` looks like a token of ``platform``'s provider."""
    try:
        provider_for(platform).validate_token(token)
    except ValueError as exc:
        raise PydanticCustomError("invalid_token", str(exc)) from None
    return token


TimezoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^\S+$")]
AppId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
HHMM = Annotated[str, AfterValidator(_hhmm)]
LocalWallTime = Annotated[str, AfterValidator(_send_at_local)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- devices -------------------------------------------------------------------------------


class DeviceRegistration(_Body):
    user_id: UserId
    app: AppId | None = None
    platform: Platform
    token: Annotated[str, StringConstraints(max_length=MAX_TOKEN_LENGTH)]
    environment: Environment | None = Field(
        default=None, description="APNs environment of an iOS token; defaults to the app's"
    )
    timezone: TimezoneName | None = None
    locale: Annotated[str, StringConstraints(max_length=35), AfterValidator(_locale)] | None = None
    permission: Permission | None = None
    replaces: Annotated[str, StringConstraints(max_length=MAX_TOKEN_LENGTH)] | None = Field(
        default=None, description="the token this one refreshes; it is retired"
    )

    @model_validator(mode="after")
    def _tokens_match_platform(self) -> DeviceRegistration:
        check_device_token(self.platform, self.token)
        if self.replaces is not None:
            check_device_token(self.platform, self.replaces)
        return self


class DeviceOut(_Out):
    id: str
    user_id: str
    app: str
    platform: str
    token: str
    environment: str
    timezone: str | None
    locale: str | None
    permission: str
    status: Literal["active", "invalid", "stale"]
    invalid_reason: str | None
    invalidated_at: datetime | None
    created_at: datetime
    last_seen_at: datetime


class DeviceList(BaseModel):
    devices: list[DeviceOut]


# --- preferences ---------------------------------------------------------------------------


class QuietHours(_Body):
    start: HHMM
    end: HHMM


class PreferencesUpdate(_Body):
    """PUT replaces every field (a field left out returns to its default); PATCH changes only the
    fields present."""

    timezone: TimezoneName | None = None
    behavioral: bool | None = None
    promotional: bool | None = None
    quiet_hours: QuietHours | None = None


class PreferencesOut(BaseModel):
    user_id: str
    timezone: str | None
    behavioral: bool
    promotional: bool
    quiet_hours: QuietHours | None = Field(description="null: the gateway default applies")
    effective_quiet_hours: QuietHours
    updated_at: datetime | None


class PreferenceChangeOut(_Out):
    at: datetime
    by: str = Field(description="the name of the API key that made the change")
    changes: dict[str, list[Any]] = Field(description="{field: [old, new]}; null: the default")


class PreferenceHistory(BaseModel):
    history: list[PreferenceChangeOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null: last")


# --- notifications -------------------------------------------------------------------------


class NotificationRequest(_Body):
    user_id: UserId
    app: AppId | None = Field(default=None, description="may be left out when one app exists")
    tier: Tier | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    title: Annotated[str, StringConstraints(max_length=1024)] | None = None
    body: Annotated[str, StringConstraints(max_length=4096)] | None = None
    data: dict[str, Any] | None = None
    collapse_key: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS)] | None = None
    expires_at: AwareDatetime | None = None
    badge: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    sound: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    thread_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    send_at: AwareDatetime | None = Field(
        default=None,
        description="send at this instant (RFC 3339 with offset) instead of now; at or before "
        "now it is sent now. Its TTL counts from this instant",
    )
    send_at_local: LocalWallTime | None = Field(
        default=None,
        description='send when the user\'s clock reads this: "YYYY-MM-DDTHH:MM", or "HH:MM" for '
        "the next time it does (today, else tomorrow), in the user's time zone at acceptance; "
        "a user who moves zone before it is due gets it at that wall time in the new zone",
    )

    @model_validator(mode="after")
    def _content_and_expiry(self) -> NotificationRequest:
        if self.title is None and self.body is None and not self.data:
            raise PydanticCustomError("invalid_request", "give at least one of title, body or data")
        if self.ttl_seconds is not None and self.expires_at is not None:
            raise PydanticCustomError("invalid_request", "give ttl_seconds or expires_at, not both")
        if self.send_at is not None and self.send_at_local is not None:
            raise PydanticCustomError("invalid_request", "give send_at or send_at_local, not both")
        return self


class BatchRequest(_Body):
    notifications: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]


class DeliveryOut(_Out):
    device_id: str
    platform: str
    status: Literal["pending", "sent", "failed", "invalid_token"]
    attempts: int
    provider_id: str | None
    error: str | None


NotificationStatusName = Literal[
    "queued", "deferred", "sent", "failed", "dropped", "expired", "cancelled"
]


class DecisionOut(BaseModel):
    """How the policy decided (at acceptance, or at release once released)."""

    zone: str = Field(description="the IANA zone the user's local time was read in")
    zone_source: Literal["preferences", "device", "default"]
    local_time: datetime = Field(
        description="the instant of the decision on the user's clock, with that zone's offset"
    )
    quiet_hours: QuietHours | None = Field(
        description="the window applied; null when the tier ignores quiet hours or an earlier "
        "rule decided before they were checked (e.g. a scheduled send not yet released)"
    )
    rule: Literal[
        "consent", "devices", "expiry", "quiet_hours", "frequency_cap", "scheduled", "send"
    ] = Field(description="the rule that decided")


class NotificationOut(_Out):
    id: str
    user_id: str
    app: str
    tier: Tier
    category: str | None
    classified_by: Literal["category", "tier", "default"]
    status: NotificationStatusName
    reason: str | None
    deliver_at: datetime | None
    expires_at: datetime
    created_at: datetime
    collapse_key: str | None = None
    send_at: datetime | None = Field(
        default=None, description="a scheduled send's instant (send_at_local resolved)"
    )
    send_at_local: str | None = Field(default=None, description="as the request gave it")
    decision: DecisionOut | None = Field(
        default=None, description="null only for notifications stored before decisions were"
    )


class NotificationDetail(NotificationOut):
    deliveries: list[DeliveryOut]


class PageQuery(BaseModel):
    """The query of a list read newest first, a page at a time."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=200)] = Field(default=50, description="page size")
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None, description="next_cursor of the previous page"
    )


class UserNotificationsQuery(PageQuery):
    """The query of ``GET /v1/users/{user_id}/notifications``."""

    status: NotificationStatusName | None = Field(default=None, description="only this status")


class NotificationPage(BaseModel):
    notifications: list[NotificationOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="for the next page; null on the last one")


class ProblemField(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    status: int
    title: str
    detail: str
    code: str
    errors: list[ProblemField] | None = None


class BatchResult(BaseModel):
    results: list[NotificationOut | Problem]


# --- parsing --------------------------------------------------------------------------------


def validation_error(exc: ValidationError, *, prefix: str = "") -> ValidationFailed:
    """Translate pydantic's errors into a 422 naming every field, with the specific codes for
    time zones and device tokens."""
    errors: list[FieldError] = []
    kinds: set[str] = set()
    for item in exc.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"])
        errors.append(FieldError(field=f"{prefix}{location}" or "(body)", message=item["msg"]))
        kinds.add(item["type"])
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    if "invalid_timezone" in kinds:
        return InvalidTimezone(summary, errors=errors)
    if "invalid_token" in kinds:
        return InvalidToken(summary, errors=errors)
    return ValidationFailed(summary, errors=errors)


_USER_ID: TypeAdapter[str] = TypeAdapter(UserId)


def parse_user_id(value: str) -> str:
    """A ``user_id`` from a path; 422 ``invalid_request`` unless it is 1-128 characters with
    no whitespace."""
    try:
        return _USER_ID.validate_python(value)
    except ValidationError as exc:
        raise validation_error(exc, prefix="user_id") from None


def parse_model(model: type[M], payload: Any) -> M:
    """``payload`` (decoded JSON) as ``model``; 422 naming every invalid field otherwise."""
    if not isinstance(payload, dict):
        raise ValidationFailed(
            "the request body must be a JSON object",
            errors=[FieldError(field="(body)", message="expected a JSON object")],
        )
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise validation_error(exc) from None
