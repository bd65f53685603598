"""The shapes of what the gateway takes and gives: request and response bodies.

These pydantic models validate every request (the services parse with them, whoever calls) and
are also the source of ``/openapi.json``, so the published contract cannot drift from what the
code accepts. Validation failures that have an error code of their own (``invalid_timezone``,
``invalid_token``) are raised as :class:`PydanticCustomError` with that code as the error type,
and :func:`validation_error` turns them into the matching :mod:`gateway.errors` error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.config import parse_hhmm, validate_timezone_name
from gateway.errors import FieldError, InvalidTimezone, InvalidToken, ValidationFailed
from gateway.providers.registry import provider_for
from policies import parse_send_at_local
from policies.permission import (
    OsPromptResult,
    PermissionEventKind,
    SoftAskAction,
    SoftAskReason,
    event_result_problem,
)
from policies.tiers import Tier
from tokens.models import Environment, Permission, Platform

M = TypeVar("M", bound=BaseModel)

MAX_TTL_SECONDS = 28 * 86_400  # FCM's maximum; APNs stores for about 30 days
MAX_TOKEN_LENGTH = 4096
MAX_USER_ID_LENGTH = 128
MAX_RESOURCE_ID_LENGTH = 36  # the gateway's ids are UUIDs: anything longer was never issued
MAX_JSON_DEPTH = 32
"""How deeply free-form JSON (a notification's ``data``) may nest: more than any payload needs,
and far below the recursion limits of the encoders and databases it passes through."""
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
"""The instants a request may name. Every one of them is representable in UTC, so nothing
downstream (a comparison, an expiry, a database column) overflows on it."""

_LOCALE_PATTERN = r"[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*"
_LOCALE = re.compile(_LOCALE_PATTERN)
# an id: no whitespace and no control character (C0, DEL, C1); a lone surrogate never gets this
# far, pydantic refuses it as "not a valid string"
_ID_CHARACTERS = r"[^\s\x00-\x1f\x7f-\x9f]+"
_ID = re.compile(_ID_CHARACTERS)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _timezone(value: str) -> str:
    try:
        return validate_timezone_name(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_timezone", str(exc)) from None


def _hhmm(value: str) -> str:
    try:
        if not value.isascii():  # a regex's \d also takes other scripts' digits
            raise ValueError(f"expected a 24-hour time as 'HH:MM' (00:00-23:59), got {value!r}")
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


def _id_rule(what: str, max_length: int) -> str:
    return f"{what} is 1-{max_length} characters with no whitespace or control character"


def _id_schema(what: str, max_length: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "pattern": f"^{_ID_CHARACTERS}$",
            "description": _id_rule(what, max_length),
        }
    )


def _id_rules(what: str, max_length: int) -> tuple[AfterValidator, WithJsonSchema]:
    """The check and the schema of an id a caller chooses (a user, an event, an app as a path
    names it): printable text of at most ``max_length`` characters, refused with a message that
    states the rule."""

    def check(value: str) -> str:
        if len(value) > max_length or not _ID.fullmatch(value):
            raise PydanticCustomError("invalid_request", _id_rule(what, max_length))
        return value

    return AfterValidator(check), _id_schema(what, max_length)


def is_resource_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id the gateway issues (see :data:`ResourceId`)."""
    return len(value) <= MAX_RESOURCE_ID_LENGTH and _ID.fullmatch(value) is not None


def _resource_id(value: str) -> str:
    if not is_resource_id(value):
        raise PydanticCustomError("invalid_request", _id_rule("an id", MAX_RESOURCE_ID_LENGTH))
    return value


def representable_instant(value: datetime) -> datetime:
    """``value`` in UTC; ``ValueError`` unless it is aware and between :data:`EARLIEST_INSTANT`
    and :data:`LATEST_INSTANT` (``0001-01-01T00:00:00+14:00`` is not even representable in
    UTC: converting it overflows)."""
    if value.tzinfo is None:
        raise ValueError("a timestamp needs an offset, such as Z or +01:00")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc <= LATEST_INSTANT:
        raise ValueError(
            f"a timestamp must lie between {EARLIEST_INSTANT.year} and {LATEST_INSTANT.year} "
            "once converted to UTC"
        )
    return utc


def _timestamp_text(value: Any) -> Any:
    # pydantic would also take a number (seconds since 1970) or a string of digits as a
    # datetime: a caller sending either meant something else
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "invalid_request",
            "expected an RFC 3339 timestamp with an offset, such as 2030-01-01T09:00:00+01:00",
        )
    return value


def _instant(value: datetime) -> datetime:
    try:
        return representable_instant(value)
    except ValueError as exc:
        raise PydanticCustomError("invalid_request", str(exc)) from None


def json_depth_at_most(limit: int) -> AfterValidator:
    """A validator refusing JSON (decoded) that nests deeper than ``limit`` levels; ``{}`` is
    one level. It walks the containers, never the strings, so it costs little."""

    def check(value: Any) -> Any:
        level: list[Any] = [value]
        for _ in range(limit):
            deeper: list[Any] = []
            for item in level:
                for child in item.values() if isinstance(item, dict) else item:
                    if isinstance(child, (dict, list)):
                        deeper.append(child)
            if not deeper:
                return value
            level = deeper
        raise PydanticCustomError(
            "invalid_request", f"JSON here may nest at most {limit} levels deep"
        )

    return AfterValidator(check)


def check_device_token(platform: Platform, token: str) -> str:
    """Raise ``invalid_token`` unless ``token`` looks like a token of ``platform``'s provider."""
    try:
        provider_for(platform).validate_token(token)
    except ValueError as exc:
        raise PydanticCustomError("invalid_token", str(exc)) from None
    return token


TimezoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
UserId = Annotated[StrictStr, *_id_rules("a user id", MAX_USER_ID_LENGTH)]
ResourceId = Annotated[
    StrictStr, AfterValidator(_resource_id), _id_schema("an id", MAX_RESOURCE_ID_LENGTH)
]
"""The id of a device or a notification, as a path names it: the wrong shape is a 422, a
well-formed id that names nothing a 404."""
AppId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AppPathId = Annotated[StrictStr, *_id_rules("an app id", 64)]
"""An app as a path names it (``/v1/apps/{app}/...``): an app the gateway does not serve is a
404 (or a 403 for a key limited to other apps)."""
HHMM = Annotated[
    str,
    AfterValidator(_hhmm),
    WithJsonSchema({"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}),
]
LocalWallTime = Annotated[str, AfterValidator(_send_at_local)]
Locale = Annotated[
    str,
    StringConstraints(max_length=35),
    AfterValidator(_locale),
    WithJsonSchema({"type": "string", "maxLength": 35, "pattern": f"^{_LOCALE_PATTERN}$"}),
]
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_timestamp_text),
    AfterValidator(_instant),
    Field(
        description=f"RFC 3339 with an offset; from {EARLIEST_INSTANT.year} to "
        f"{LATEST_INSTANT.year} once converted to UTC"
    ),
]
"""A point in time a request names: an RFC 3339 string with an offset, converted to UTC, within
[:data:`EARLIEST_INSTANT`, :data:`LATEST_INSTANT`]; anything else is a 422 naming the field."""
JsonObject = Annotated[dict[str, Any], json_depth_at_most(MAX_JSON_DEPTH)]
"""Free-form JSON a caller passes through (a notification's ``data``), bounded in depth."""

PATH_PARAMETERS: dict[str, Any] = {
    "user_id": UserId,
    "device_id": ResourceId,
    "notification_id": ResourceId,
    "app": AppPathId,
}
"""What each ``{placeholder}`` of a route's path must hold. A route naming a placeholder missing
here does not load: every id a path carries is validated like the ids of a body."""
EventId = Annotated[StrictStr, *_id_rules("an event id", MAX_USER_ID_LENGTH)]


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
    locale: Locale | None = None
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
    behavioral: StrictBool | None = None
    promotional: StrictBool | None = None
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
    # the document states the two rules the validator below enforces, so a generated or
    # hand-written request that follows the document is accepted
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["title"], "properties": {"title": {"type": "string"}}},
                {"required": ["body"], "properties": {"body": {"type": "string"}}},
                {
                    "required": ["data"],
                    "properties": {"data": {"type": "object", "minProperties": 1}},
                },
            ],
            "not": {"required": ["ttl_seconds", "expires_at"]},
        }
    )

    user_id: UserId
    app: AppId | None = Field(default=None, description="may be left out when one app exists")
    tier: Tier | None = None
    category: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    title: Annotated[str, StringConstraints(max_length=1024)] | None = None
    body: Annotated[str, StringConstraints(max_length=4096)] | None = None
    data: JsonObject | None = Field(
        default=None,
        description=f"passed to the app as is; a JSON object at most {MAX_JSON_DEPTH} levels deep",
    )
    collapse_key: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    ttl_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_TTL_SECONDS)] | None = None
    expires_at: Instant | None = None
    badge: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
    sound: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    thread_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    send_at: Instant | None = Field(
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
    # each item is parsed on its own (a bad one is a problem in the results, not a 422), so here
    # it is only bounded: one level for the item, the rest for its data
    notifications: Annotated[
        list[Annotated[dict[str, Any], json_depth_at_most(MAX_JSON_DEPTH + 1)]],
        Field(min_length=1, max_length=500),
    ]


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


# --- permission ----------------------------------------------------------------------------


class PermissionEventReport(_Body):
    """One thing that happened on a user's way to notification permission, as the app reports
    it (``POST /v1/users/{user_id}/permission-events``)."""

    app: AppId | None = Field(default=None, description="may be left out when one app exists")
    event: PermissionEventKind
    device_id: ResourceId | None = Field(
        default=None, description="the user's device of this app the event happened on"
    )
    platform: Platform | None = Field(
        default=None,
        validate_default=True,
        description="required without device_id; with it, must be the device's",
    )
    result: OsPromptResult | None = Field(
        default=None,
        validate_default=True,
        description="the user's answer: given for os_prompt_result, and only for it",
    )
    at: Instant | None = Field(
        default=None, description="when it happened (default: now); at most 5 minutes ahead"
    )
    event_id: EventId | None = Field(
        default=None,
        description="the app's id for this event: sending it again answers with the first record",
    )

    @field_validator("platform")
    @classmethod
    def _platform_without_device(
        cls, value: Platform | None, info: ValidationInfo
    ) -> Platform | None:
        # device_id is absent from info.data when it failed validation itself: say nothing then
        if value is None and "device_id" in info.data and info.data["device_id"] is None:
            raise PydanticCustomError("invalid_request", "platform is required without device_id")
        return value

    @field_validator("result")
    @classmethod
    def _result_goes_with_event(
        cls, value: OsPromptResult | None, info: ValidationInfo
    ) -> OsPromptResult | None:
        event = info.data.get("event")
        problem = event_result_problem(event, value) if event is not None else None
        if problem is not None:
            raise PydanticCustomError("invalid_request", problem)
        return value


class PermissionEventOut(_Out):
    id: int
    user_id: str
    app: str
    platform: Platform
    event: PermissionEventKind
    result: OsPromptResult | None
    device_id: str | None
    at: datetime
    event_id: str | None
    source: Literal["reported", "registration"] = Field(
        description="reported: by the app; registration: a device registered with a new permission"
    )
    reported_by: str = Field(description="the name of the API key that reported it")
    recorded_at: datetime


class SoftAskQuery(_Body):
    app: AppId | None = Field(default=None, description="may be left out when one app exists")
    platform: Platform


class SoftAskOut(BaseModel):
    action: SoftAskAction
    reason: SoftAskReason
    retry_at: datetime | None = Field(
        description="while a cooldown runs, when it ends; null when only something new "
        "(a value moment, an answer) can change the answer"
    )


class FunnelQuery(_Body):
    since: Instant | None = Field(
        default=None, description="start, included (default: 30 days before until, or now)"
    )
    until: Instant | None = Field(
        default=None, description="end, excluded (default: none, every event since counts)"
    )
    platform: Platform | None = Field(default=None, description="default: both")


class FunnelCounts(BaseModel):
    """Distinct users who reached each step in the window."""

    value_moment: int
    soft_ask_shown: int
    soft_ask_accepted: int
    soft_ask_declined: int
    os_prompt_shown: int
    os_granted: int
    os_denied: int
    os_provisional: int
    settings_prompt_shown: int
    re_enabled: int = Field(description="users with a device that went from denied to granted")


class FunnelRates(BaseModel):
    """Ratios of the counts; null when the divisor is 0."""

    soft_ask_acceptance: float | None = Field(description="soft_ask_accepted / soft_ask_shown")
    os_grant_after_soft_ask: float | None = Field(description="os_granted / soft_ask_accepted")
    opt_in: float | None = Field(description="os_granted / soft_ask_shown")


class FunnelOut(BaseModel):
    app: str
    platform: Platform | None
    since: datetime
    until: datetime | None = Field(description="null: no end, every event since counts")
    counts: FunnelCounts
    rates: FunnelRates


class MissedQuery(_Body):
    app: AppId | None = Field(default=None, description="default: every app the key may use")
    since: Instant | None = Field(default=None, description="default: 30 days ago")


class MissedOut(BaseModel):
    """The user's notifications dropped because no device of theirs could take them."""

    since: datetime
    total: int
    by_tier: dict[Tier, int]
    by_category: dict[str, int] = Field(description="only notifications that had a category")


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


def path_parameters_model(path: str) -> type[BaseModel] | None:
    """The model of the ``{placeholders}`` of ``path`` (None when it has none), each typed by
    :data:`PATH_PARAMETERS`; ``ValueError`` for a placeholder that table does not know."""
    names = re.findall(r"{(\w+)}", path)
    if not names:
        return None
    unknown = [name for name in names if name not in PATH_PARAMETERS]
    if unknown:
        raise ValueError(
            f"{path}: declare the type of {', '.join(unknown)} in gateway.schemas.PATH_PARAMETERS"
        )
    fields: dict[str, Any] = {name: (PATH_PARAMETERS[name], ...) for name in names}
    return create_model("PathParameters", __config__=ConfigDict(extra="forbid"), **fields)


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
